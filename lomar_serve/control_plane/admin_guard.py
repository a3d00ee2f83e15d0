"""The admin API's gate, in front of everything else (ASGI): the bearer token is checked from the headers before
one byte of the body is read, and an admin body is capped.

FastAPI reads and parses a route's JSON body before it runs the route's dependencies, so a token check written
as a dependency comes after a 300 MB body has been read and parsed. Here a request without the token is answered
at once; one with the token must declare its body's length (411 for a chunked body) and send at most
`max_body_bytes` (413 beyond; the HTTP server holds a client to the length it declared).
"""
from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from lomar_serve.common.error_handlers import error_response
from lomar_serve.common.errors import LengthRequired, PayloadTooLarge, ServiceError
from lomar_serve.control_plane.auth import DISABLED_MESSAGE
from lomar_serve.jobs.errors import AdminDisabled

ADMIN_PREFIX = "/v1/admin"
MAX_ADMIN_BODY_BYTES = 64 * 1024  # a job request is a few hundred bytes
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class AdminGuard:
    """ASGI middleware; the lifecycle (with its token) is read from `app.state.lifecycle` (None: disabled)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_ADMIN_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not scope["path"].startswith(ADMIN_PREFIX)
                or scope["method"] not in BODY_METHODS  # no body: the routes' own token check comes first
                or not _routed(scope)):  # no such route: the router's 404 or 405
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        try:
            lifecycle = getattr(scope["app"].state, "lifecycle", None)
            if lifecycle is None:
                raise AdminDisabled(DISABLED_MESSAGE)
            lifecycle.auth.check(headers.get("authorization"))
            declared = headers.get("content-length", "")
            if "transfer-encoding" in headers and not declared:
                raise LengthRequired(f"admin request bodies need a Content-Length (at most {self.max_body_bytes} "
                                     "bytes), not a chunked body")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise PayloadTooLarge(f"an admin request body is at most {self.max_body_bytes} bytes; this one "
                                      f"declares {declared}")
        except ServiceError as error:
            await error_response(error.status, error.code, error.message, error.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _routed(scope: Scope) -> bool:
    """Whether a route of the app answers this method and path."""
    return any(route.matches(scope)[0] == Match.FULL for route in scope["app"].router.routes)
