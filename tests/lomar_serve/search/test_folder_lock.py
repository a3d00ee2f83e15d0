"""One gateway at a time per folder of embedded collections (lomar_serve/search/folder_lock.py): the lock itself,
an app refusing to start on a held folder, and two real `lomar gateway` processes on one folder."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lomar_serve.common.api_keys import SCOPES
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from lomar_serve.search.errors import CollectionsLocked
from lomar_serve.search.folder_lock import FolderLock
from tests.lomar_serve.fake_backend import FakeBackend
from tests.lomar_serve.processes import REPO, free_port, wait_until_ok


def test_a_held_folder_is_refused_naming_its_holder_until_released(tmp_path: Path) -> None:
    first, second = FolderLock(tmp_path / "collections"), FolderLock(tmp_path / "collections")
    first.acquire()
    with pytest.raises(CollectionsLocked) as refused:
        second.acquire()  # flock locks open files: a second one in the same process is refused too
    assert f"pid {os.getpid()}" in refused.value.message and "pgvector" in refused.value.message
    assert not second.held
    first.release()
    second.acquire()
    assert second.held
    second.release()


def test_a_second_app_on_the_same_folder_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    settings = Settings(model_repository=tmp_path / "repo", default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", search_dir=tmp_path / "collections",
                        open_scopes=SCOPES)
    with TestClient(create_app(settings, backend=FakeBackend())) as first:
        assert first.post("/v1/collections", json={"name": "pics"}).status_code == 201
        with pytest.raises(CollectionsLocked), TestClient(create_app(settings, backend=FakeBackend())):
            pass
        assert first.get("/v1/collections/pics").status_code == 200
    with TestClient(create_app(settings, backend=FakeBackend())) as after:  # released when the first stopped
        assert after.get("/v1/collections/pics").status_code == 200


def _gateway(folder: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`lomar gateway` on a free port in front of a Triton that is not there (collections need none to start)."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_MODEL_REPOSITORY": str(folder / "repo"),
                   "LOMAR_SEARCH_DIR": str(folder / "collections"), **env}
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", "gateway", "--port", str(port),
                                    "--triton-url", f"127.0.0.1:{free_port()}"], stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=REPO)
    return process, f"http://127.0.0.1:{port}"


@pytest.mark.e2e
def test_two_gateway_processes_on_one_folder(tmp_path: Path) -> None:
    """The second refuses at start, saying why and what to do; with LOMAR_SEARCH_ENGINE=none it starts; after the
    first is killed (SIGKILL: the kernel drops its lock) another gateway takes the folder."""
    (tmp_path / "repo").mkdir()
    first, url = _gateway(tmp_path, tmp_path / "first.log", {})
    try:
        wait_until_ok(first, f"{url}/healthz", "the first gateway", (tmp_path / "first.log").read_text, 60)
        second, _ = _gateway(tmp_path, tmp_path / "second.log", {})
        assert second.wait(60) != 0
        log = (tmp_path / "second.log").read_text()
        assert "is held by another gateway" in log and f"pid {first.pid}" in log and "pgvector" in log, log[-3000:]
        without, other = _gateway(tmp_path, tmp_path / "without.log", {"LOMAR_SEARCH_ENGINE": "none"})
        try:
            wait_until_ok(without, f"{other}/healthz", "a gateway without collections",
                          (tmp_path / "without.log").read_text, 60)
        finally:
            without.terminate()
            without.wait(30)
    finally:
        first.kill()
        first.wait(30)
    third, url = _gateway(tmp_path, tmp_path / "third.log", {})
    try:
        wait_until_ok(third, f"{url}/healthz", "a gateway after the first died", (tmp_path / "third.log").read_text,
                      60)
        time.sleep(0.5)
        assert third.poll() is None
    finally:
        third.terminate()
        third.wait(30)
