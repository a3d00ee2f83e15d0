"""Triton killed mid-run: requests get 503 + Retry-After, the supervisor restarts it, requests succeed again."""
from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from tests.lomar_serve.photos import photo_bytes

pytestmark = pytest.mark.e2e


def test_triton_sigkill_503_then_recovery(gateway, client):
    jpeg = photo_bytes("coffee")
    old_pid = gateway.triton_pid()
    assert old_pid is not None
    statuses: list[int] = []
    retry_after: list[str] = []
    stop = threading.Event()

    def load() -> None:  # a client that keeps sending while Triton dies and comes back
        with httpx.Client(base_url=gateway.url, timeout=60.0) as http:
            while not stop.is_set():
                response = http.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"})
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.json()["error"]["code"] == "triton_unavailable"
                    retry_after.append(response.headers.get("retry-after", ""))
                time.sleep(0.05)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        while len(statuses) < 3:
            time.sleep(0.05)
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (503 in statuses and statuses[-3:] == [200, 200, 200]):
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert 503 in statuses, "no request saw Triton down"
    assert statuses[-3:] == [200, 200, 200], f"did not recover: {statuses[-10:]}"
    assert set(statuses) <= {200, 503}, f"unexpected statuses {sorted(set(statuses))}"
    assert retry_after and all(value.isdigit() for value in retry_after)
    new_pid = gateway.triton_pid()
    assert new_pid is not None and new_pid != old_pid
    assert client.get("/readyz").status_code == 200
