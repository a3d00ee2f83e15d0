"""The gateway's exception hierarchy. Each error knows its HTTP status and a stable machine-readable code;
the conversion to a JSON response happens only at the route edge (`lomar_serve.api.errors`).
"""
from __future__ import annotations

from contracts import preprocessing


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(GatewayError):
    status, code = 400, "bad_request"


class InvalidImage(GatewayError):
    """The bytes are not an image we can decode (empty, text, truncated, too small)."""

    status, code = 400, "invalid_image"


class RequestTimeout(GatewayError):
    """The request body did not arrive within the body timeout; the connection is closed."""

    status, code = 408, "request_timeout"

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


class LengthRequired(GatewayError):
    """A body whose size must be known before it is read (admin requests) came without a Content-Length."""

    status, code = 411, "length_required"


class PayloadTooLarge(GatewayError):
    """Too many bytes, too many pixels (decompression bomb) or too many images."""

    status, code = 413, "payload_too_large"


class InvalidParameter(GatewayError):
    """A query parameter out of range or of the wrong type."""

    status, code = 422, "invalid_parameter"


class ModelNotFound(GatewayError):
    status, code = 404, "model_not_found"


class FileNotFound(GatewayError):
    """A web-page asset that does not exist."""

    status, code = 404, "not_found"


class WrongModelKind(GatewayError):
    """E.g. classify with a reconstruction model."""

    status, code = 422, "wrong_model_kind"


class TritonUnavailable(GatewayError):
    """Triton is down, restarting, or the model is still loading: retry later."""

    status, code = 503, "triton_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class TritonTimeout(GatewayError):
    status, code = 504, "triton_timeout"


class InferenceFailed(GatewayError):
    """Triton answered with an error for a well-formed request (a model bug, not the client's fault)."""

    status, code = 502, "inference_failed"


_IMAGE_ERRORS: dict[type[preprocessing.ImageError], type[GatewayError]] = {
    preprocessing.InvalidImage: InvalidImage,
    preprocessing.UnsupportedImage: UnsupportedMediaType,
    preprocessing.ImageTooLarge: PayloadTooLarge,
}


def from_image_error(error: preprocessing.ImageError) -> GatewayError:
    """The gateway's error for a preprocessing error (`contracts.preprocessing`), with the same message."""
    kind = next((gateway for image, gateway in _IMAGE_ERRORS.items() if isinstance(error, image)), InvalidImage)
    return kind(error.message)
