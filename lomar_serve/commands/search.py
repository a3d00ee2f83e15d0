"""`lomar search COLLECTION IMAGE` (lomar_serve/search/cli.py)."""
from __future__ import annotations

from lomar_serve.search.cli import search_main


def main(argv: list[str]) -> int:
    return search_main(argv)
