"""The project's own check for the schemathesis runs of test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS):
schema-valid data sent to an inference route may be answered 422 for one reason only.

That reason is a `model` of the wrong kind (a classifier for /v1/reconstruct, a reconstruction model for
/v1/classify): `422 wrong_model_kind` by the error table (lomar_serve/gateway/errors.py), documented by every
inference route, and beyond what a schema can say (a model's kind is Triton's, not the document's).
schemathesis.toml therefore lets the inference routes answer 422; this check keeps every other 422 for
schema-valid data a failure (a parameter the document allows, refused).
"""
from __future__ import annotations

import re

import schemathesis

INFERENCE_PATHS = re.compile(r"^/v1/(classify|embed|embeddings|reconstruct)$")
WRONG_MODEL_KIND = "wrong_model_kind"


def _error_code(response: schemathesis.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


@schemathesis.check
def a_valid_inference_request_is_422_only_for_the_wrong_model_kind(ctx: schemathesis.CheckContext,
                                                                   response: schemathesis.Response,
                                                                   case: schemathesis.Case) -> bool | None:
    meta = case.meta
    if (meta is None or not meta.generation.mode.is_positive or response.status_code != 422
            or not INFERENCE_PATHS.match(case.operation.path)):
        return None
    code = _error_code(response)
    if code != WRONG_MODEL_KIND:
        raise AssertionError(f"schema-valid data refused with 422 {code!r} (only {WRONG_MODEL_KIND!r} may be): "
                             f"{response.text[:300]}")
    return True
