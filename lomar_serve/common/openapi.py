"""What FastAPI cannot infer for the OpenAPI documents of the gateway and the control plane: the error responses
of every route (`{"error": {...}}`, 503 with Retry-After) and the request bodies a route reads as JSON itself.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from lomar_serve.common.schemas import ErrorBody

SCHEMA_REF = "#/components/schemas/{model}"
_ERROR_DESCRIPTIONS = {
    400: "malformed request: invalid image, bad base64, malformed multipart or JSON",
    401: "no bearer token (the admin token, or an API key where the route needs one)",
    403: "a token or API key that is not valid or lacks the route's scope, the admin API disabled, or a path "
         "outside the data roots",
    404: "no such model, job, version, collection or image",
    408: "the request body did not arrive in time (settings: body_timeout_s)",
    409: "a conflict: the job or deployment is not in a state that allows this, the collection or image id exists, "
         "or the collection belongs to a model of another embedding size",
    411: "an admin request body without a Content-Length (a chunked body)",
    413: "too many bytes, pixels or images",
    415: "not an image, or a Content-Type the route does not take",
    422: "a parameter or body field out of range, or the wrong kind of model",
    429: "the API key's rate limit or quota is reached: retry after Retry-After seconds",
    502: "Triton answered with an error",
    503: "a dependency is not ready (Triton, a model loading, the store or database) or the process cannot "
         "serve: retry after Retry-After seconds",
    504: "Triton did not answer in time (settings: request_timeout_s)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the `{"error": {...}}` body (503 with Retry-After)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
        responses[status] = response
    return responses


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` of a route that reads `model` as JSON itself (to apply the byte limit first)."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {
                                "schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}}}}
