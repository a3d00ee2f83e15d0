"""`lomar collections ...` (lomar_serve/search/cli.py)."""
from __future__ import annotations

from lomar_serve.search.cli import collections_main


def main(argv: list[str]) -> int:
    return collections_main(argv)
