"""End-to-end fixtures: a model repository exported from the official micro checkpoints, and ONE real
`lomar serve` process (real Triton, supervised, plus the uvicorn gateway) shared by the whole session."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.lomar_serve.processes import (E2E_LABELS, GatewayProcess, alive, children, command_line, free_port,
                                        launch_serve)

TRITON_HTTP_PORT = free_port()  # pinned: `lomar serve` must launch its Triton there


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, official_dir: Path) -> Path:
    """The official micro fine-tuned (classify, 6 classes) and pretrained (reconstruct) checkpoints, exported
    with `lomar export`'s Python API as lomar_classifier and lomar_reconstruction."""
    from export.pipeline import ExportOptions, export_checkpoint

    root = tmp_path_factory.mktemp("serve_e2e")
    labels = root / "labels.txt"
    labels.write_text("\n".join(E2E_LABELS) + "\n")
    repository = root / "model_repository"
    export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                    out=repository, labels_file=labels, max_batch_size=16))
    export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth", task="reconstruct",
                                    out=repository, max_batch_size=16))
    return repository


@pytest.fixture(scope="session")
def gateway(model_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """`lomar serve` on the exported repository: it launches and supervises Triton and runs the gateway.
    At the end SIGTERM must stop the gateway and Triton and leave no process behind."""
    served = launch_serve(["--model-repository", str(model_repository), "--log-level", "info"],
                          tmp_path_factory.mktemp("serve_logs") / "lomar_serve.log",
                          {"LOMAR_MAX_IMAGES": "16", "LOMAR_RETRY_AFTER_S": "1",
                           "LOMAR_TRITON_HTTP_PORT": str(TRITON_HTTP_PORT)})
    process = served.process
    try:
        served.wait_ready()
        yield served
    finally:
        descendants = children(process.pid)
        descendants += [pid for child in descendants for pid in children(child)]
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [(pid, command_line(pid)[:1]) for pid in descendants if alive(pid)]
        for pid, _ in orphans:
            os.kill(pid, signal.SIGKILL)
        assert code == 0, f"lomar serve exited with {code} on SIGTERM:\n{served.log_tail()}"
        assert not orphans, f"processes left behind after SIGTERM: {orphans}"


@pytest.fixture(scope="session")
def client(gateway: GatewayProcess):
    with httpx.Client(base_url=gateway.url, timeout=120.0) as http:
        yield http
