"""Assemble the FastAPI gateway. Nothing else happens here.

    uvicorn --factory lomar_serve.app:create_app      # settings from LOMAR_* (LOMAR_TRITON_URL required)
    lomar serve                                       # launches Triton too (lomar_serve/serve.py)
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lomar_serve.api.admin_guard import AdminGuard
from lomar_serve.api.errors import install_error_handlers
from lomar_serve.api.observe import ObserveRequests
from lomar_serve.api.openai_schemas import EmbeddingsRequest
from lomar_serve.api.openapi import add_schemas
from lomar_serve.api.routes import (admin, classify, collections, docs, embed, embeddings, health, models,
                                    reconstruct, web)
from lomar_serve.api.schemas import ImagesRequest, ReconstructResponse
from lomar_serve.api.timeouts import BodyReadTimeout
from lomar_serve.inference import InferenceBackend, TritonClient
from lomar_serve.lifecycle.job_worker import JobSettings, Worker
from lomar_serve.lifecycle.service import build_lifecycle
from lomar_serve.gateway import Gateway
from lomar_serve.metrics import GatewayMetrics
from lomar_serve.search.service import SearchService, search_settings
from lomar_serve.settings import Settings, get_settings

LOGGER = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, backend: InferenceBackend | None = None, *,
               version_for: Callable[[str], str | None] | None = None) -> FastAPI:
    """The gateway app.

    Args:
        settings: None reads them from the environment.
        backend: None connects a TritonClient to `settings.triton_url` (a fake backend is only for unit tests).
        version_for: model name -> version to route requests to (the lifecycle's routing); None: Triton's policy.
    """
    settings = settings or get_settings()
    if backend is None and settings.triton_url is None:
        raise ValueError("the gateway needs a Triton URL (LOMAR_TRITON_URL or `lomar serve`, which launches one)")
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = backend or TritonClient(
            str(settings.triton_url), timeout_s=settings.request_timeout_s, retry_after_s=settings.retry_after_s,
            on_error=lambda model, kind: metrics.triton_errors.labels(model, kind).inc())

        def on_switch(name: str, version: str) -> None:
            app.state.gateway.catalog.invalidate(name)
            app.state.search.hold_for_switch(name, version)  # re-index collections before the old one unloads

        # The model lifecycle (admin API, jobs, deploys) needs the real Triton; it then owns the routing.
        lifecycle = None if backend is not None or version_for is not None else build_lifecycle(
            settings, on_switch=on_switch)
        route = lifecycle.routing.serving_version if lifecycle is not None else version_for
        app.state.gateway = Gateway(settings, client, metrics, version_for=route or (lambda name: None))
        app.state.search = SearchService(search_settings(settings), app.state.gateway)
        await app.state.search.start()
        worker: Worker | None = None
        if lifecycle is not None:
            await asyncio.to_thread(lifecycle.start)
            app.state.lifecycle = lifecycle
            if lifecycle.auth.enabled:  # one box: a worker in this process runs the jobs the admin API queues
                worker = Worker(lifecycle.store, JobSettings(jobs_dir=lifecycle.jobs_dir,
                                                             model_repository=lifecycle.repository.root),
                                f"gateway-{os.getpid()}", serving_version=lifecycle.deployer.serving_version,
                                deploy=lifecycle.deployer.deploy)
                worker.start()
        LOGGER.info("gateway ready; Triton at %s", settings.triton_url)
        try:
            yield
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            if lifecycle is not None:
                await asyncio.to_thread(lifecycle.close)
            await app.state.search.close()
            await app.state.gateway.close()

    app = FastAPI(title="LoMaR gateway", version="1",
                  description="Labels, embeddings and masked reconstructions from LoMaR models served by Triton.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    docs.install(app)
    app.add_middleware(AdminGuard)  # innermost: the admin token before any body is read
    app.add_middleware(BodyReadTimeout, timeout_s=settings.body_timeout_s)
    defaults = {"classifier": settings.default_classifier, "reconstructor": settings.default_reconstructor}
    app.add_middleware(ObserveRequests, metrics=metrics, defaults=defaults,
                       known=lambda name: hasattr(app.state, "gateway") and app.state.gateway.catalog.known(name))
    for module in (classify, embed, embeddings, reconstruct, models, health, web, admin, collections):
        app.include_router(module.router)
    add_schemas(app, [ImagesRequest, EmbeddingsRequest, ReconstructResponse])
    return app
