"""Bearer-token access to the admin API.

One token (LOMAR_ADMIN_TOKEN). None configured: the admin API is disabled and every request is refused with a
message saying so. Tokens are compared in constant time (hmac.compare_digest) and never logged or echoed.
"""
from __future__ import annotations

import hmac

from lomar_serve.common.errors import Forbidden, Unauthorized
from lomar_serve.jobs.errors import AdminDisabled

DISABLED_MESSAGE = ("the admin API is disabled: no admin token is configured "
                    "(set LOMAR_ADMIN_TOKEN on the control plane to enable it)")


class AdminAuth:
    """Checks `Authorization: Bearer <token>` headers against the configured admin token."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def __repr__(self) -> str:  # never show the token
        return f"AdminAuth(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, authorization: str | None) -> None:
        """Return if the header carries the admin token.

        Raises:
            AdminDisabled (403): no token configured. Unauthorized (401): no bearer token sent.
            Forbidden (403): a wrong token.
        """
        if self._token is None:
            raise AdminDisabled(DISABLED_MESSAGE)
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized("admin requests need the header 'Authorization: Bearer <admin token>'")
        if not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise Forbidden("the admin token is not valid")
