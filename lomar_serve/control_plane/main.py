"""`lomar control-plane`: the admin API (jobs, deploys, rollbacks) for a fleet of Tritons and gateways.

    LOMAR_ADMIN_TOKEN=$(openssl rand -hex 32) lomar control-plane --triton-url triton-a:8000 --triton-url triton-b:8000
    lomar control-plane --host 127.0.0.1 --port 8100 --model-repository /shared/models --store postgresql://...

Settings come from LOMAR_* environment variables (control_plane/settings.py, every one in docs/settings.md); flags
override them. The admin API listens on loopback unless told otherwise, never on a gateway's public port.
"""
from __future__ import annotations

import argparse
import logging

import uvicorn

from lomar_serve.common.processes import start_role
from lomar_serve.common.settings import add_flag, add_flags
from lomar_serve.common.timeouts import header_timeout_protocol
from lomar_serve.control_plane.app import create_control_app
from lomar_serve.control_plane.settings import ControlPlaneSettings

HEADER_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar control-plane", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, ControlPlaneSettings, {"--host": "control_host", "--port": "control_port"})
    add_flag(parser, ControlPlaneSettings, "--triton-url", "triton_urls", repeat=True,
             help_suffix="; repeat the flag for each")
    add_flags(parser, ControlPlaneSettings, {
        "--model-repository": "model_repository", "--jobs-dir": "jobs_dir", "--store": "store_url",
        "--log-level": "log_level"})
    return parser


def main(argv: list[str]) -> int:
    settings = start_role(ControlPlaneSettings, build_parser(), argv, logging.getLogger(__name__))
    if settings is None:
        return 2
    server = uvicorn.Server(uvicorn.Config(create_control_app(settings), host=settings.control_host,
                                           port=settings.control_port, log_level=settings.log_level,
                                           lifespan="on", http=header_timeout_protocol(HEADER_TIMEOUT_S)))
    server.run()
    return 0 if server.started else 1
