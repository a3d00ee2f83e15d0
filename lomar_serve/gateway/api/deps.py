"""Typed dependencies of the routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.model_repository import MODEL_NAME_PATTERN, VERSION_PATTERN
from lomar_serve.common.api_keys import KeyGrant, Scope
from lomar_serve.gateway.service import Gateway
from lomar_serve.gateway.settings import Settings


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request for an attribute read.
async def get_gateway(request: Request) -> Gateway:
    """The gateway built by the app's lifespan."""
    return request.app.state.gateway


async def get_settings(request: Request) -> Settings:
    return request.app.state.gateway.settings


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
# ?model=NAME; None picks the settings' default for the endpoint.
ModelQuery = Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN,
                                         description="Triton model name; default: the gateway's default model")]
# ?version=N pins the answer to that version; None: the serving version, or a running rollout's split.
VersionQuery = Annotated[str | None, Query(pattern=VERSION_PATTERN, description=(
    "answer with exactly this version of the model, which must be loaded (404 when it is not); default: the "
    "serving version, or the candidate for the share of requests a canary rollout gives it"))]

# Declares the scheme in OpenAPI (the /docs "Authorize" button); the check is the gateway's Access, on the raw header.
API_KEY = HTTPBearer(scheme_name="ApiKey", auto_error=False, description=(
    "an API key from the control plane (`lomar keys create`); needed for the scopes the gateway does not open to "
    "anyone (LOMAR_OPEN_SCOPES; by default collection writes)"))


def requires(scope: Scope) -> DependsParam:
    """A route's dependency: the request may use `scope` (gateway/access.py). The key's grant, None for an
    anonymous request, is left in `request.state.grant`. The OpenAPI document names the scope in the route's
    security requirement (`{"ApiKey": [scope]}`, as OpenAPI 3.1 allows role names for any scheme).

    Async on purpose: a plain function would cost a thread-pool hop per request (about 0.25 ms at one client,
    benchmarks/serve_stages.py); the check is a dict lookup and a hash, and the key file is stat-ed at most once
    per second (a small read when it changed)."""
    async def authorize(request: Request,  # the scope as a default: the annotations are strings (no closure names)
                        _: HTTPAuthorizationCredentials | None = Security(API_KEY, scopes=[scope])) -> None:
        client = request.client.host if request.client else "-"
        request.state.grant = request.app.state.access.authorize(scope, request.headers.get("authorization"),
                                                                 client=client)
    return Depends(authorize)


def grant_of(request: Request) -> KeyGrant | None:
    """The grant `requires` found for this request."""
    return getattr(request.state, "grant", None)
