"""Read timeouts uvicorn does not have: for a request's headers (a protocol subclass) and its body (ASGI).

Without them a client that opens a connection and sends half its headers, or promises 100 kB and sends 5 kB,
holds a connection and a task forever.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from lomar_serve.common.errors import RequestTimeout

LOGGER = logging.getLogger(__name__)


def header_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11) closing a connection whose next request's headers are not
    complete `timeout_s` after the connection opened or the previous response ended (pass as Config(http=...)).
    Idle keep-alive connections are closed earlier by uvicorn's own keep-alive timeout."""

    class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            waiting_after = self.cycle  # a new request's headers replace the cycle

            def expire() -> None:
                if self.cycle is waiting_after and not self.transport.is_closing():
                    LOGGER.debug("closing a connection from %s: no complete request headers in %.1f s",
                                  self.client, timeout_s)
                    self.transport.close()

            self._header_timer = self.loop.call_later(timeout_s, expire)

    return HeaderTimeoutProtocol


class BodyReadTimeout:
    """ASGI middleware: a request's whole body must arrive within `timeout_s` of the route's first read, else
    408 `request_timeout` (raised inside the route's read, so the error handlers format it)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def timed_receive() -> Message:
            nonlocal deadline, complete
            if complete:  # after the body: waiting for a disconnect, never timed
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
