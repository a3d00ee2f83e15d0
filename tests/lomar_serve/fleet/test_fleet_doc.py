"""docs/fleet.md's one-machine commands, pasted as written into a shell in a copy of the clone (the built-in model
repository, `lomar` on the PATH as `make install` leaves it), with the ports moved only by the variables the page
documents: two Tritons, two gateways, the control plane and a worker come up, and both gateways classify."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.lomar_serve.photos import photo_bytes
from tests.lomar_serve.processes import REPO, children, free_port, reap

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 300.0


def one_machine_block() -> str:
    """The first bash block under "## On one machine" in docs/fleet.md."""
    page = (REPO / "docs" / "fleet.md").read_text()
    section = page[page.index("## On one machine"):]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "docs/fleet.md has no bash block under 'On one machine'"
    return match.group(1)


def test_the_documented_fleet_starts_and_serves(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "model_repository", clone / "model_repository")
    (clone / ".venv").mkdir()
    (clone / ".venv" / "bin").symlink_to(Path(sys.executable).parent)  # what `make install` leaves
    ports = {name: free_port() for name in ("TRITON_A", "TRITON_B", "GATEWAY_A", "GATEWAY_B", "LOMAR_CONTROL_PORT")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOMAR_")}  # a fresh shell
    env |= {name: str(port) for name, port in ports.items()} | {"PYTHONPATH": str(REPO)}
    script = one_machine_block() + "\nwait\n"
    log_path = tmp_path / "fleet.log"
    with open(log_path, "wb") as log:
        shell = subprocess.Popen(["bash", "-c", script], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        gateways = [f"http://127.0.0.1:{ports[name]}" for name in ("GATEWAY_A", "GATEWAY_B")]
        control = f"http://127.0.0.1:{ports['LOMAR_CONTROL_PORT']}"
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = [f"{url}/readyz" for url in gateways] + [f"{control}/readyz"]
        while waiting and time.monotonic() < deadline and shell.poll() is None:
            waiting = [url for url in waiting if not _ok(url)]
            time.sleep(0.5)
        assert not waiting, f"not ready: {waiting}\n{log_path.read_text(errors='replace')[-4000:]}"
        labels = []
        for url in gateways:
            answer = httpx.post(f"{url}/v1/classify", files={"image": ("cat.jpg", photo_bytes("cat"), "image/jpeg")},
                                timeout=60)
            assert answer.status_code == 200, answer.text
            labels.append(answer.json()["results"][0]["labels"][0]["label"])
        assert labels[0] == labels[1], f"the two gateways disagree: {labels}"
        tritons = [f"http://127.0.0.1:{ports[name]}/v2/health/ready" for name in ("TRITON_A", "TRITON_B")]
        assert all(_ok(url) for url in tritons), "a Triton is not on the port its variable gave"
    finally:
        descendants = children(shell.pid)
        descendants += [pid for child in descendants for pid in children(child)]
        os.killpg(shell.pid, signal.SIGTERM)
        try:
            shell.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
        reap(descendants, timeout_s=30)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
