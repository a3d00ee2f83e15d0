"""What FastAPI cannot infer for the OpenAPI document: the inference routes' request bodies (they are parsed by
hand, with a byte limit, from multipart, raw image or JSON bodies), the error responses of every route, and the
schemas those bodies refer to.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from lomar_serve.api.schemas import ErrorBody

_REF = "#/components/schemas/{model}"
_BINARY = {"type": "string", "format": "binary"}
_ERROR_DESCRIPTIONS = {
    400: "malformed request: invalid image, bad base64, malformed multipart or JSON",
    401: "no bearer token",
    403: "wrong token, admin API disabled, or a path outside the data roots",
    404: "no such model, job, version, collection or image",
    408: "the request body did not arrive in time (settings: body_timeout_s)",
    409: "a conflict: the job or deployment is not in a state that allows this, the collection or image id exists, "
         "or the collection belongs to a model of another embedding size",
    411: "an admin request body without a Content-Length (a chunked body)",
    413: "too many bytes, pixels or images",
    415: "not an image, or a Content-Type the route does not take",
    422: "a parameter or body field out of range, or the wrong kind of model",
    502: "Triton answered with an error",
    503: "Triton is not ready or the model is loading: retry after Retry-After seconds",
    504: "Triton did not answer in time (settings: request_timeout_s)",
}
# Statuses every inference route can answer besides 200.
INFERENCE_ERRORS = (400, 404, 408, 413, 415, 422, 502, 503, 504)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the `{"error": {...}}` body (503 with Retry-After)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        if status == 503:
            response["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
        responses[status] = response
    return responses


def image_request_body() -> dict[str, Any]:
    """`openapi_extra=` of an inference route: multipart (repeat `image`), one raw image, or JSON base64."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "array", "items": _BINARY, "minItems": 1,
                                     "description": "image files; repeat the field for a batch"}}}},
        "image/*": {"schema": _BINARY},
        "application/json": {"schema": {"$ref": _REF.format(model="ImagesRequest")}},
    }}}


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` of a route that reads `model` as JSON itself (to apply the byte limit first)."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def add_schemas(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Put `models` (request bodies no route declares as a parameter) into the document's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                json_schema = model.model_json_schema(ref_template=_REF)
                components.update(json_schema.pop("$defs", {}))
                components[model.__name__] = json_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
