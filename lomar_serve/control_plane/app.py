"""Assemble the control plane's FastAPI app: the admin API, its console (web page), health routes and OpenAPI page.

    uvicorn --factory lomar_serve.control_plane.app:create_control_app   # settings from LOMAR_*
    lomar control-plane                                                # the same, with flags (main.py)
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lomar_serve.common import docs
from lomar_serve.common.error_handlers import install_error_handlers
from lomar_serve.common.health import check_descriptors
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.redaction import mask_access_log
from lomar_serve.common.schemas import Health
from lomar_serve.control_plane import console, routes
from lomar_serve.control_plane.admin_guard import AdminGuard
from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.control_plane.settings import ControlPlaneSettings

LOGGER = logging.getLogger(__name__)


def create_control_app(settings: ControlPlaneSettings | None = None) -> FastAPI:
    settings = settings or ControlPlaneSettings()  # type: ignore[call-arg]  (from the environment)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lifecycle = Lifecycle(settings)
        await asyncio.to_thread(lifecycle.start)
        app.state.lifecycle = lifecycle
        LOGGER.info("control plane ready on %s:%d; Tritons %s", settings.control_host, settings.control_port,
                    ", ".join(settings.triton_urls))
        try:
            yield
        finally:
            await asyncio.to_thread(lifecycle.close)

    app = FastAPI(title="LoMaR control plane", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Retrain jobs, deploys and rollbacks of the LoMaR models a fleet of Tritons serves.")
    install_error_handlers(app)
    mask_access_log()  # a `?token=` a client sends is not written to the access log
    docs.install(app)
    app.add_middleware(AdminGuard)  # the admin token before any body is read
    app.include_router(routes.router)
    app.include_router(routes.metrics_router)  # GET /metrics (Prometheus)
    app.include_router(console.router)  # the web page at / and what it needs

    @app.get("/healthz", tags=["health"], summary="The control plane process is alive and can still open files",
             responses=error_responses(503))
    async def healthz() -> Health:
        check_descriptors()
        return Health(status="ok")

    @app.get("/readyz", tags=["health"], summary="The lifecycle store answers", responses=error_responses(503))
    async def readyz() -> Health:
        await asyncio.to_thread(app.state.lifecycle.store.list_jobs, 1)  # StoreUnavailable: a 503 that says why
        return Health(status="ok")

    return app
