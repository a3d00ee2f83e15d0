"""`lomar embed FILE... [--url URL]` (lomar_serve/client_cli.py)."""
from __future__ import annotations

from lomar_serve.client_cli import run


def main(argv: list[str]) -> int:
    return run("embed", argv)
