"""The two helper scripts the images install: seed-model-repository (sh) and http-probe (Python), run for real."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from contracts.model_repository import CONFIG_FILE, ONNX_FILE
from tests.deploy.fleet import DOCKER_DIR

SEED_SCRIPT = DOCKER_DIR / "seed-model-repository.sh"


def seed(seed_dir: Path, repository: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "LOMAR_SEED_REPOSITORY": str(seed_dir),
           "LOMAR_MODEL_REPOSITORY": str(repository), **extra_env}
    return subprocess.run(["sh", str(SEED_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """A small stand-in for the image's /models: one model, one version."""
    root = tmp_path / "seed"
    (root / "lomar_classifier" / "1").mkdir(parents=True)
    (root / "lomar_classifier" / CONFIG_FILE).write_text('name: "lomar_classifier"\n')
    (root / "lomar_classifier" / "1" / ONNX_FILE).write_bytes(b"onnx")
    return root


def test_seeds_an_empty_repository(seed_dir: Path, tmp_path: Path) -> None:
    repository = tmp_path / "volume"
    repository.mkdir()
    (repository / "lost+found").mkdir()  # what a fresh ext4 volume holds: not a model
    result = seed(seed_dir, repository)
    assert result.returncode == 0, result.stderr
    assert (repository / "lomar_classifier" / CONFIG_FILE).read_text() == 'name: "lomar_classifier"\n'
    assert (repository / "lomar_classifier" / "1" / ONNX_FILE).read_bytes() == b"onnx"
    assert os.access(repository / "lomar_classifier" / CONFIG_FILE, os.W_OK)  # deploys rewrite it


def test_leaves_a_repository_with_models_alone(seed_dir: Path, tmp_path: Path) -> None:
    """A repository deploys have changed is never overwritten, nor completed with the seed's other models."""
    repository = tmp_path / "volume"
    (repository / "my_model").mkdir(parents=True)
    (repository / "my_model" / CONFIG_FILE).write_text("deployed: 7\n")
    result = seed(seed_dir, repository)
    assert result.returncode == 0, result.stderr
    assert "already holds models" in result.stdout
    assert sorted(path.name for path in repository.iterdir()) == ["my_model"]
    assert (repository / "my_model" / CONFIG_FILE).read_text() == "deployed: 7\n"


def test_seeding_twice_changes_nothing(seed_dir: Path, tmp_path: Path) -> None:
    repository = tmp_path / "volume"
    assert seed(seed_dir, repository).returncode == 0
    (repository / "lomar_classifier" / CONFIG_FILE).write_text("deployed: 2\n")
    assert seed(seed_dir, repository).returncode == 0
    assert (repository / "lomar_classifier" / CONFIG_FILE).read_text() == "deployed: 2\n"


def test_refuses_to_run_without_its_settings(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(SEED_SCRIPT)], env={"PATH": os.environ["PATH"]}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "LOMAR_SEED_REPOSITORY" in result.stderr


@pytest.fixture(scope="module")
def http_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_probe", DOCKER_DIR / "http_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(BaseHTTPRequestHandler):
    """/ok answers 200, /busy answers 503 (an unready gateway), /slow never answers in time."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/slow":
            threading.Event().wait(10)
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_http_probe(http_probe: ModuleType, server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_probe.main([f"http://127.0.0.1:{server}/ok"]) == 0
    assert http_probe.main([f"http://127.0.0.1:{server}/busy"]) == 1
    monkeypatch.setattr(http_probe, "TIMEOUT_S", 0.5)
    assert http_probe.main([f"http://127.0.0.1:{server}/slow"]) == 1
    monkeypatch.setenv("LOMAR_PORT", str(server))
    assert http_probe.main(["/ok"]) == 0  # a path is asked of the local gateway's port
    assert http_probe.main([]) == 2


def test_http_probe_on_a_closed_port(http_probe: ModuleType) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert http_probe.main([f"http://127.0.0.1:{port}/readyz"]) == 1
