"""`lomar control-plane`: the admin API (jobs, deploys, rollbacks) for a fleet of Tritons and gateways.

    LOMAR_ADMIN_TOKEN=$(openssl rand -hex 32) lomar control-plane --triton-url triton-a:8000 --triton-url triton-b:8000
    lomar control-plane --host 127.0.0.1 --port 8100 --model-repository /shared/models --store postgresql://...

Settings come from LOMAR_* environment variables (control_plane/settings.py); flags override them. The admin API
listens on loopback unless told otherwise, never on a gateway's public port.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import uvicorn

from lomar_serve.common.processes import configure_logging, load_settings
from lomar_serve.common.timeouts import header_timeout_protocol
from lomar_serve.control_plane.app import create_control_app
from lomar_serve.control_plane.settings import ControlPlaneSettings

HEADER_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar control-plane", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address the admin API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="admin API port (default 8100)")
    parser.add_argument("--triton-url", action="append", help="host:port of a Triton's HTTP endpoint; repeat for "
                                                              "every Triton of the fleet (LOMAR_TRITON_URLS)")
    parser.add_argument("--model-repository", type=Path, help="the shared, writable model repository")
    parser.add_argument("--jobs-dir", type=Path, help="shared folder of job logs and checkpoints")
    parser.add_argument("--store", dest="store_url", help="job store: a SQLite file or postgresql://...")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {key: value for key, value in {
        "control_host": args.host, "control_port": args.port, "triton_urls": args.triton_url,
        "model_repository": args.model_repository, "jobs_dir": args.jobs_dir, "store_url": args.store_url,
        "log_level": args.log_level}.items() if value is not None}
    settings = load_settings(ControlPlaneSettings, "lomar control-plane", overrides)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    logging.getLogger(__name__).info("settings:\n%s", settings.describe())
    server = uvicorn.Server(uvicorn.Config(create_control_app(settings), host=settings.control_host,
                                           port=settings.control_port, log_level=settings.log_level,
                                           lifespan="on", http=header_timeout_protocol(HEADER_TIMEOUT_S)))
    server.run()
    return 0 if server.started else 1
