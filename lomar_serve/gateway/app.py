"""Assemble the FastAPI gateway. Nothing else happens here.

    uvicorn --factory lomar_serve.gateway.app:create_app      # settings from LOMAR_* (LOMAR_TRITON_URL required)
    lomar serve                                       # launches Triton too (lomar_serve/serve/main.py)
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lomar_serve.common import docs
from lomar_serve.common.error_handlers import install_error_handlers
from lomar_serve.common.redaction import mask_access_log
from lomar_serve.common.holds import VersionHold
from lomar_serve.common.timeouts import BodyReadTimeout
from lomar_serve.gateway.access import Access
from lomar_serve.gateway.api.observe import ObserveRequests
from lomar_serve.gateway.api.openai_schemas import EmbeddingsRequest
from lomar_serve.gateway.api.openapi import complete_openapi
from lomar_serve.gateway.api.routes import classify, collections, embed, embeddings, health, models, reconstruct, web
from lomar_serve.gateway.api.schemas import ImagesRequest, ReconstructResponse
from lomar_serve.gateway.collections import SearchService, search_settings
from lomar_serve.gateway.inference import InferenceBackend, TritonClient
from lomar_serve.gateway.metrics import GatewayMetrics
from lomar_serve.gateway.routing import PublishedRouting
from lomar_serve.gateway.service import Gateway
from lomar_serve.gateway.settings import Settings, get_settings

LOGGER = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, backend: InferenceBackend | None = None, *,
               version_for: Callable[[str], str | None] | None = None) -> FastAPI:
    """The gateway app: the data plane (inference, model listing, search, web page); no admin API.

    Args:
        settings: None reads them from the environment.
        backend: None connects a TritonClient to `settings.triton_url` (a fake backend is only for unit tests).
        version_for: model name -> version to route requests to; None follows the serving versions the model
            repository publishes (lomar_serve/gateway/routing.py).
    """
    settings = settings or get_settings()
    if backend is None and settings.triton_url is None:
        raise ValueError("the gateway needs a Triton URL (LOMAR_TRITON_URL or `lomar serve`, which launches one)")
    metrics = GatewayMetrics()
    repository = settings.model_repository if settings.model_repository.is_dir() else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        client = backend or TritonClient(
            str(settings.triton_url), timeout_s=settings.request_timeout_s, retry_after_s=settings.retry_after_s,
            on_error=lambda model, kind: metrics.triton_errors.labels(model, kind).inc())

        def reindex_holding(name: str, version: str, old: str) -> None:
            assert repository is not None  # switches come from the repository
            with VersionHold(repository / name, old):  # the control plane keeps `old` loaded meanwhile
                app.state.search.hold_for_switch(name, version)

        def on_switch(name: str, version: str, old: str | None) -> None:  # in the routing thread
            loop.call_soon_threadsafe(app.state.gateway.catalog.invalidate, name)
            if old is not None and app.state.search.indexes(name):
                threading.Thread(target=reindex_holding, args=(name, version, old), daemon=True,
                                 name=f"lomar-reindex-{name}").start()

        routing = None if version_for is not None else PublishedRouting(
            repository, interval_s=settings.routing_interval_s, on_switch=on_switch)
        route = version_for or routing.serving_version  # type: ignore[union-attr]
        app.state.gateway = Gateway(settings, client, metrics, version_for=route,
                                    published=routing.snapshot if routing is not None else dict,
                                    rollout_for=routing.rollout if routing is not None else lambda name: None)
        app.state.search = SearchService(search_settings(settings), app.state.gateway)
        await app.state.search.start()
        if routing is not None:
            routing.start()
        reports = asyncio.create_task(app.state.gateway.rollouts.recorder.run(), name="lomar-rollout-reports")
        LOGGER.info("gateway ready; Triton at %s; serving versions %s", settings.triton_url,
                    routing.snapshot() if routing is not None else "routed by the caller")
        try:
            yield
        finally:
            reports.cancel()
            if routing is not None:
                routing.stop()
            await app.state.search.close()
            await app.state.gateway.close()

    app = FastAPI(title="LoMaR gateway", version="1",
                  description="Labels, embeddings and masked reconstructions from LoMaR models served by Triton.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.access = Access.of(settings)
    install_error_handlers(app)
    mask_access_log()  # a `?token=` a client sends is not written to the access log
    docs.install(app)
    app.add_middleware(BodyReadTimeout, timeout_s=settings.body_timeout_s)
    defaults = {"classifier": settings.default_classifier, "reconstructor": settings.default_reconstructor}
    app.add_middleware(ObserveRequests, metrics=metrics, defaults=defaults,
                       known=lambda name: hasattr(app.state, "gateway") and app.state.gateway.catalog.known(name),
                       server_timing=settings.server_timing)
    for module in (classify, embed, embeddings, reconstruct, models, health, web, collections):
        app.include_router(module.router)
    complete_openapi(app, [ImagesRequest, EmbeddingsRequest, ReconstructResponse], app.state.access.open_scopes)
    return app
