"""What FastAPI cannot infer for the gateway's OpenAPI document: the inference routes' request bodies (they are
parsed by hand, with a byte limit, from multipart, raw image or JSON bodies), the schemas those bodies refer to, and
which routes this gateway opens to requests without an API key. The error responses are
`lomar_serve.common.openapi.error_responses`.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from lomar_serve.common.openapi import SCHEMA_REF

_BINARY = {"type": "string", "format": "binary"}
# Statuses every inference route can answer besides 200.
INFERENCE_ERRORS = (400, 404, 408, 413, 415, 422, 502, 503, 504)


def image_request_body() -> dict[str, Any]:
    """`openapi_extra=` of an inference route: multipart (repeat `image`), one raw image, or JSON base64."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "array", "items": _BINARY, "minItems": 1,
                                     "description": "image files; repeat the field for a batch"}}}},
        "image/*": {"schema": _BINARY},
        "application/json": {"schema": {"$ref": SCHEMA_REF.format(model="ImagesRequest")}},
    }}}


def complete_openapi(app: FastAPI, models: list[type[BaseModel]], open_scopes: frozenset[str]) -> None:
    """Put `models` (request bodies no route declares as a parameter) into the document's components, and make the
    API key optional (`security: [{}, {"ApiKey": [scope]}]`) on the routes whose scope (deps.requires) is open."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                json_schema = model.model_json_schema(ref_template=SCHEMA_REF)
                components.update(json_schema.pop("$defs", {}))
                components[model.__name__] = json_schema
            for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
                required = [set(scopes) for requirement in operation.get("security", [])
                            for scopes in requirement.values()]
                if required and all(scopes <= open_scopes for scopes in required):
                    operation["security"] = [{}, *operation["security"]]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

