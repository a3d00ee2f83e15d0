"""The Triton supervisor against the real bundled binary: restart after SIGKILL on the same ports, clean stop,
and a broken repository that fails fast instead of looping."""
from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from lomar_serve.triton.server import TritonServerConfig
from lomar_serve.triton.supervisor import RestartPolicy, TritonSupervisor

pytestmark = pytest.mark.e2e
FAST = RestartPolicy(start_timeout_s=60, poll_interval_s=0.1, initial_backoff_s=0.2, stop_timeout_s=10)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5) as response:
        return response.status == 200


def test_restart_after_sigkill_and_clean_stop(tmp_path):
    supervisor = TritonSupervisor(TritonServerConfig(model_repository=tmp_path), policy=FAST)
    url = supervisor.http_url
    supervisor.start()
    try:
        assert supervisor.wait_ready(60)
        first = supervisor.pid
        assert first is not None and _ready(url)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (supervisor.pid in (None, first) or not supervisor.is_ready()) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = supervisor.pid
        assert second not in (None, first) and supervisor.restarts == 1
        assert supervisor.http_url == url and _ready(url)  # same port after the restart
    finally:
        supervisor.stop()
    assert not supervisor.is_running() and supervisor.pid is None
    assert not _alive(second)


def test_broken_repository_gives_up(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "no_such_backend"\n')
    supervisor = TritonSupervisor(TritonServerConfig(model_repository=tmp_path),
                                  policy=RestartPolicy(start_timeout_s=60, initial_backoff_s=0.1, initial_attempts=2))
    supervisor.start()
    try:
        assert not supervisor.wait_ready(120)
        assert not supervisor.is_running() and "giving up" in (supervisor.failure or "")
    finally:
        supervisor.stop()


def test_invalid_policy():
    with pytest.raises(ValueError):
        RestartPolicy(initial_backoff_s=5, max_backoff_s=1)
