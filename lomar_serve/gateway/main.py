"""`lomar gateway`: the data plane alone, in front of a running Triton (one gateway of a fleet).

    lomar gateway --triton-url triton-a:8000 --model-repository /shared/models --port 8000

Settings come from LOMAR_* environment variables (lomar_serve/gateway/settings.py, docs/settings.md); flags
override them. SIGINT and SIGTERM stop it.
"""
from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from lomar_serve.common.processes import start_role
from lomar_serve.common.settings import add_flags
from lomar_serve.common.timeouts import header_timeout_protocol
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings

LOGGER = logging.getLogger(__name__)


def build_parser(prog: str = "lomar gateway", description: str | None = __doc__,
                 settings: type[Settings] = Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, settings, {
        "--model-repository": "model_repository", "--host": "host", "--port": "port", "--triton-url": "triton_url",
        "--log-level": "log_level"})
    return parser


def run_gateway(settings: Settings) -> bool:
    """Serve until SIGINT/SIGTERM (uvicorn handles them while it runs, then hands them back); False if it never
    started (e.g. its port is taken)."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level=settings.log_level, lifespan="on",
                                           http=header_timeout_protocol(settings.header_timeout_s)))
    server.run()
    return server.started


def main(argv: list[str]) -> int:
    settings = start_role(Settings, build_parser(), argv, LOGGER)
    if settings is None:
        return 2
    if settings.triton_url is None:
        print("lomar gateway: give --triton-url or LOMAR_TRITON_URL (a gateway of a fleet never launches Triton; "
              "`lomar serve` does)", file=sys.stderr)
        return 2
    return 0 if run_gateway(settings) else 1
