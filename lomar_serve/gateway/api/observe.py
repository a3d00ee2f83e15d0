"""Request counts and latency per endpoint and model, for every outcome (bad uploads included), and with
LOMAR_SERVER_TIMING the request's `Server-Timing` header (gateway/server_timing.py).

A pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lomar_serve.gateway import server_timing
from lomar_serve.gateway.metrics import GatewayMetrics

ENDPOINTS = {"/v1/classify": "classify", "/v1/embed": "embed", "/v1/embeddings": "embeddings",
             "/v1/reconstruct": "reconstruct"}
# The label of requests without ?model= (/v1/embeddings names its model in the body: counted as the default).
DEFAULT_MODEL = {"classify": "classifier", "embed": "classifier", "embeddings": "classifier",
                 "reconstruct": "reconstructor"}


class ObserveRequests:
    """Count inference requests by (endpoint, model, status) and time them by (endpoint, model)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, defaults: dict[str, str],
                 known: Callable[[str], bool], server_timing: bool = False) -> None:
        """
        Args:
            defaults: "classifier"/"reconstructor" -> the default model name, used when `?model=` is absent.
            known: whether a model name has resolved to a served model (only those become labels).
            server_timing: collect the request's stage times and answer them in a `Server-Timing` header.
        """
        self.app = app
        self.metrics = metrics
        self.defaults = defaults
        self.known = known
        self.server_timing = server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ENDPOINTS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        stages = server_timing.StageTimes() if self.server_timing else None
        token = server_timing.CURRENT.set(stages)

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if stages is not None:
                    header = (server_timing.HEADER, stages.header_value(time.perf_counter() - start))
                    message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            server_timing.CURRENT.reset(token)
            model = self._model_label(endpoint, scope.get("query_string", b""))
            self.metrics.requests.labels(endpoint, model, str(status)).inc()
            self.metrics.latency.labels(endpoint, model).observe(time.perf_counter() - start)

    def _model_label(self, endpoint: str, query: bytes) -> str:
        """The model asked for; names that never resolved to a served model share one label, so clients cannot
        inflate the metrics' cardinality."""
        names = parse_qs(query.decode("latin-1")).get("model")
        if not names:
            return self.defaults[DEFAULT_MODEL[endpoint]]
        return names[0] if self.known(names[0]) else "(other)"
