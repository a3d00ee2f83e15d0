"""Typed dependencies of the routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from contracts.model_repository import MODEL_NAME_PATTERN
from lomar_serve.gateway.service import Gateway
from lomar_serve.gateway.settings import Settings


def get_gateway(request: Request) -> Gateway:
    """The gateway built by the app's lifespan."""
    return request.app.state.gateway


def get_settings(request: Request) -> Settings:
    return request.app.state.gateway.settings


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
# ?model=NAME; None picks the settings' default for the endpoint.
ModelQuery = Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN,
                                         description="Triton model name; default: the gateway's default model")]
