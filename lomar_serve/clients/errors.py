"""The error of the gateway's Python client (lomar_serve/clients/gateway.py, ingest.py)."""
from __future__ import annotations


class GatewayClientError(Exception):
    """The gateway answered with an error (status, code and message from its JSON body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"[{status} {code}] {message}")
        self.status, self.code, self.message = status, code, message
