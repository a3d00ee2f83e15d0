"""`lomar deploy NAME VERSION`: load a version in Triton, smoke-test it, then route the gateway's requests to it.

The version that served before keeps serving until the new one is ready; on any failure nothing changes.
`lomar rollback NAME` goes back to the version deployed before.
"""
from __future__ import annotations

import argparse
import sys

from lomar_serve.lifecycle.admin_cli import add_connection_args, print_json, run_with_client


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lomar deploy", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="Triton model name, e.g. lomar_classifier")
    parser.add_argument("version", type=int, help="version number in the model repository")
    add_connection_args(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog

    def action(client) -> int:  # noqa: ANN001
        print_json(client.deploy(args.name, args.version))
        return 0

    return run_with_client(args, action)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
