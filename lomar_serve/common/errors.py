"""The base of every error a `lomar` process reports to a client, and the request errors shared by the gateway and
the control plane. Each error knows its HTTP status and a stable machine-readable code; the conversion to a JSON
response happens only at the route edge (`lomar_serve.common.error_handlers`).
"""
from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a lomar HTTP service (gateway, control plane) reports to a client."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class Unauthorized(ServiceError):
    """No credentials where the route needs them (a bearer token: the admin token or an API key)."""

    status, code = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """Credentials that are not valid, or not allowed what the request asks."""

    status, code = 403, "forbidden"


class TooManyRequests(ServiceError):
    """A rate limit or quota reached: try again after `Retry-After` seconds."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class NotFound(ServiceError):
    """A web page's asset that is not in the list a process serves."""

    status, code = 404, "not_found"


class RequestTimeout(ServiceError):
    """The request body did not arrive within the body timeout; the connection is closed."""

    status, code = 408, "request_timeout"

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class LengthRequired(ServiceError):
    """A body whose size must be known before it is read (admin requests) came without a Content-Length."""

    status, code = 411, "length_required"


class PayloadTooLarge(ServiceError):
    """Too many bytes, too many pixels (decompression bomb) or too many images."""

    status, code = 413, "payload_too_large"


class InvalidParameter(ServiceError):
    """A query parameter out of range or of the wrong type."""

    status, code = 422, "invalid_parameter"


class ServiceUnavailable(ServiceError):
    """A dependency is down or not ready: retry after `Retry-After` seconds."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
