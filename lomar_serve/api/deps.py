"""Typed dependencies of the routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from lomar_serve.service import Gateway
from lomar_serve.settings import Settings


def get_gateway(request: Request) -> Gateway:
    """The gateway built by the app's lifespan."""
    return request.app.state.gateway


def get_settings(request: Request) -> Settings:
    return request.app.state.gateway.settings


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# ?model=NAME; None picks the settings' default for the endpoint.
ModelQuery = Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN,
                                         description="Triton model name; default: the gateway's default model")]
