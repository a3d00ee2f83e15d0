"""The gateway's own errors (images, models, Triton), on the shared base `lomar_serve.common.errors.ServiceError`;
the conversion to a JSON response happens only at the route edge (`lomar_serve.common.error_handlers`).
"""
from __future__ import annotations

from contracts import preprocessing
from lomar_serve.common.errors import PayloadTooLarge, ServiceError, ServiceUnavailable, UnsupportedMediaType


class InvalidImage(ServiceError):
    """The bytes are not an image we can decode (empty, text, truncated, too small)."""

    status, code = 400, "invalid_image"


class ModelNotFound(ServiceError):
    status, code = 404, "model_not_found"


class WrongModelKind(ServiceError):
    """E.g. classify with a reconstruction model."""

    status, code = 422, "wrong_model_kind"


class TritonUnavailable(ServiceUnavailable):
    """Triton is down, restarting, or the model is still loading: retry later."""

    code = "triton_unavailable"


class TritonTimeout(ServiceError):
    status, code = 504, "triton_timeout"


class InferenceFailed(ServiceError):
    """Triton answered with an error for a well-formed request (a model bug, not the client's fault)."""

    status, code = 502, "inference_failed"


_IMAGE_ERRORS: dict[type[preprocessing.ImageError], type[ServiceError]] = {
    preprocessing.InvalidImage: InvalidImage,
    preprocessing.UnsupportedImage: UnsupportedMediaType,
    preprocessing.ImageTooLarge: PayloadTooLarge,
}


def from_image_error(error: preprocessing.ImageError) -> ServiceError:
    """The gateway's error for a preprocessing error (`contracts.preprocessing`), with the same message."""
    kind = next((gateway for image, gateway in _IMAGE_ERRORS.items() if isinstance(error, image)), InvalidImage)
    return kind(error.message)
