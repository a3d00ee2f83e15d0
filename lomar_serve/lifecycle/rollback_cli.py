"""`lomar rollback NAME`: serve again the version of NAME deployed before the serving one (same safe switch as
`lomar deploy`)."""
from __future__ import annotations

import argparse
import sys

from lomar_serve.lifecycle.admin_cli import add_connection_args, print_json, run_with_client


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lomar rollback", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="Triton model name, e.g. lomar_classifier")
    add_connection_args(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog

    def action(client) -> int:  # noqa: ANN001
        print_json(client.rollback(args.name))
        return 0

    return run_with_client(args, action)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
