"""Request counts and latency per endpoint and model, for every outcome (bad uploads included).

A pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lomar_serve.gateway.metrics import GatewayMetrics

ENDPOINTS = {"/v1/classify": "classify", "/v1/embed": "embed", "/v1/embeddings": "embeddings",
             "/v1/reconstruct": "reconstruct"}
# The label of requests without ?model= (/v1/embeddings names its model in the body: counted as the default).
DEFAULT_MODEL = {"classify": "classifier", "embed": "classifier", "embeddings": "classifier",
                 "reconstruct": "reconstructor"}


class ObserveRequests:
    """Count inference requests by (endpoint, model, status) and time them by (endpoint, model)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, defaults: dict[str, str],
                 known: Callable[[str], bool]) -> None:
        """
        Args:
            defaults: "classifier"/"reconstructor" -> the default model name, used when `?model=` is absent.
            known: whether a model name has resolved to a served model (only those become labels).
        """
        self.app = app
        self.metrics = metrics
        self.defaults = defaults
        self.known = known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ENDPOINTS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
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
