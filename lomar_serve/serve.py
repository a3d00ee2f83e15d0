"""`lomar serve`: placeholder until the serving stack lands (issue: serving)."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    print("lomar serve: the serving stack (Triton + gateway) is not built yet; see the README's status section.",
          file=sys.stderr)
    return 1
