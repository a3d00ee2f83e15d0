"""The access logs of a real `lomar gateway` and a real `lomar control-plane` (uvicorn's, as they run) never show
the value of a sensitive query parameter a client sends (`?token=`, `?api_key=`...): common/redaction.py's
filter, installed by both apps. Neither needs a Triton to answer these requests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.lomar_serve.processes import REPO, free_port, wait_until_ok

pytestmark = pytest.mark.e2e
SECRET = "S3cr3t-in-a-query"
TOKEN = "access-log-admin-token-0123"


def start(role: list[str], port: int, log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_LOG_LEVEL": "info", **env}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", *role], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=REPO)


@pytest.mark.parametrize("role", ["gateway", "control-plane"])
def test_the_access_log_masks_secrets_in_query_strings(role: str, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    port, log_path = free_port(), tmp_path / f"{role}.log"
    unreachable_triton = f"127.0.0.1:{free_port()}"
    if role == "gateway":
        process = start(["gateway", "--port", str(port), "--triton-url", unreachable_triton], port, log_path,
                        {"LOMAR_MODEL_REPOSITORY": str(tmp_path / "repo"), "LOMAR_SEARCH_DIR": str(tmp_path / "s")})
    else:
        process = start(["control-plane", "--port", str(port), "--triton-url", unreachable_triton], port, log_path,
                        {"LOMAR_MODEL_REPOSITORY": str(tmp_path / "repo"), "LOMAR_ADMIN_TOKEN": TOKEN,
                         "LOMAR_JOBS_DIR": str(tmp_path / "jobs")})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(process, f"{url}/healthz", role, lambda: log_path.read_text(errors="replace"), 120)
        for path in (f"/healthz?token={SECRET}&limit=3", f"/healthz?api_key={SECRET}&key={SECRET}&offset=2",
                     f"/v1/admin/jobs?access_token={SECRET}", f"/v1/models?password={SECRET}&passfile={SECRET}"):
            httpx.get(url + path, timeout=30.0)
    finally:
        process.terminate()
        process.wait(timeout=60)
    log = log_path.read_text(errors="replace")
    assert '"GET /healthz?token=********&limit=3 HTTP/1.1" 200' in log, log[-4000:]
    assert "/healthz?api_key=********&key=********&offset=2" in log and "access_token=********" in log, log[-4000:]
    assert SECRET not in log, log[-4000:]
