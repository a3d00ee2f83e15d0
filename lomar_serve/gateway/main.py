"""`lomar gateway`: the data plane alone, in front of a running Triton (one gateway of a fleet).

    lomar gateway --triton-url triton-a:8000 --model-repository /shared/models --port 8000

Settings come from LOMAR_* environment variables (lomar_serve/gateway/settings.py, docs/settings.md); flags
override them. SIGINT and SIGTERM stop it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from lomar_serve.common.processes import configure_logging, load_settings
from lomar_serve.common.timeouts import header_timeout_protocol
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings

LOGGER = logging.getLogger(__name__)


def build_parser(prog: str = "lomar gateway", description: str | None = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, help="Triton model repository (default: ./model_repository)")
    parser.add_argument("--host", help="address the gateway listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default 8000)")
    parser.add_argument("--triton-url", help="host:port of an existing Triton's HTTP endpoint; "
                                             "without it Triton is launched and supervised")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    return parser


def settings_from(args: argparse.Namespace, program: str) -> Settings | None:
    """The gateway's settings: the environment, overridden by the flags; None (reasons on stderr) if invalid."""
    overrides = {key: value for key, value in {
        "model_repository": args.model_repository, "host": args.host, "port": args.port,
        "triton_url": args.triton_url, "log_level": args.log_level}.items() if value is not None}
    return load_settings(Settings, program, overrides)


def run_gateway(settings: Settings) -> bool:
    """Serve until SIGINT/SIGTERM (uvicorn handles them while it runs, then hands them back); False if it never
    started (e.g. its port is taken)."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level=settings.log_level, lifespan="on",
                                           http=header_timeout_protocol(settings.header_timeout_s)))
    server.run()
    return server.started


def main(argv: list[str]) -> int:
    settings = settings_from(build_parser().parse_args(argv), "lomar gateway")
    if settings is None:
        return 2
    if settings.triton_url is None:
        print("lomar gateway: give --triton-url or LOMAR_TRITON_URL (a gateway of a fleet never launches Triton; "
              "`lomar serve` does)", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    LOGGER.info("settings:\n%s", settings.describe())
    return 0 if run_gateway(settings) else 1
