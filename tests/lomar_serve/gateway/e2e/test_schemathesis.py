"""schemathesis fuzzes a real gateway and a real control plane from their own OpenAPI documents (the control
plane without and with the admin token): examples, coverage, fuzzing (positive and negative data) and stateful
phases, every check (schemathesis_hooks.py adds the project's own). Zero 5xx, zero schema violations. Bounded: a
fixed seed and MAX_EXAMPLES examples per operation; each of the three runs takes under a minute.

Both run beside the session's Triton: the gateway with `--triton-url`, the control plane with it as its fleet, its
own jobs folder and no data roots (so no generated job can start training).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lomar_serve.common.api_keys import SCOPES
from tests.lomar_serve.processes import GatewayProcess, gateway_beside, launch_control_plane

pytestmark = pytest.mark.e2e
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
TOKEN = "schemathesis-admin-token"
MAX_EXAMPLES = 50
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def servers(gateway: GatewayProcess, model_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """{"gateway": a gateway beside the session's, "control-plane": a control plane for the session's Triton}."""
    folder = tmp_path_factory.mktemp("schemathesis")
    control = launch_control_plane([gateway.triton_http_url()], model_repository, folder / "control-plane.log",
                                   {"LOMAR_ADMIN_TOKEN": TOKEN, "LOMAR_JOBS_DIR": str(folder / "jobs"),
                                    "LOMAR_DATA_ROOTS": ""})
    try:
        control.wait_ready()
        with gateway_beside(gateway, model_repository, folder / "gateway.log",
                            {"LOMAR_MAX_IMAGES": "4", "LOMAR_OPEN_SCOPES": ",".join(SCOPES)}) as served:
            yield {"gateway": served, "control-plane": control}
    finally:
        control.stop()


def _schemathesis(url: str, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """`st run` in `workdir` (it keeps a cache folder in its working directory)."""
    st = Path(sys.executable).with_name("st")
    return subprocess.run([str(st), "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--checks", "all",
                           "--mode", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "11", "--workers", "1",
                           "--request-timeout", "60", "--no-shrink", *extra],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=workdir,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)})


@pytest.mark.parametrize("role, token", [("gateway", None), ("control-plane", None), ("control-plane", TOKEN)],
                         ids=["gateway", "control-plane-anonymous", "control-plane-admin-token"])
def test_no_server_error_and_no_schema_violation(servers, role, token, tmp_path):
    server = servers[role]
    result = _schemathesis(server.url, tmp_path, *(["--header", f"Authorization: Bearer {token}"] if token else []))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output[-12000:]}\n--- {role} log ---\n{server.log_tail()}"
    total = re.search(r"Operations:\s+\d+ selected / (\d+) total", output)
    assert total and f"Tested: {total.group(1)}" in output, output[-3000:]  # every operation, none skipped
