"""Deploys and rollbacks against the real bundled Triton server, with a client sending requests throughout."""
from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from contracts.model_repository import MODEL_NAME_MAX_LENGTH
from lomar_serve.lifecycle.deploy import Deployer, DeploySettings, Routing
from lomar_serve.lifecycle.errors import DeployError, NothingToRollBack, VersionNotFound
from lomar_serve.lifecycle.repository_view import RepositoryView
from lomar_serve.lifecycle.store import LifecycleStore
from lomar_serve.lifecycle.watch import DeploymentWatcher
from lomar_serve.triton import TritonServer, TritonServerConfig
from tests.lomar_serve.lifecycle.conftest import export_tiny

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
NAME = "lomar_classifier"
OLD_CLASSES = ["cat", "dog", "bird"]
NEW_CLASSES = ["cat", "dog", "novel_class"]


class Client(threading.Thread):
    """Sends one request after another, asking for the routed version as the gateway does; counts failures."""

    def __init__(self, url: str, routing: Routing) -> None:
        super().__init__(daemon=True)
        self.url, self.routing = url, routing
        self.stop = threading.Event()
        self.versions: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        client = triton_http.InferenceServerClient(self.url, network_timeout=60.0)
        image = np.random.default_rng(1).integers(0, 256, (1, 3, 112, 112)).astype(np.uint8)
        tensor = triton_http.InferInput("image", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        while not self.stop.is_set():
            try:
                result = client.infer(NAME, [tensor], model_version=self.routing.serving_version(NAME) or "")
                assert result.as_numpy("logits").shape == (1, 3)
                self.versions.append(str(result.get_response()["model_version"]))
            except Exception as error:  # every failure counts
                self.failures.append(repr(error))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    """Triton serving version 1 of a tiny classifier; versions 2 (new classes) and 3 (broken) exist on disk."""
    work = tmp_path_factory.mktemp("deploy")
    repository = work / "repo"
    assert export_tiny(repository, work, OLD_CLASSES, seed=1) == 1
    server = TritonServer(TritonServerConfig(model_repository=repository, load_models=(NAME,)))
    server.start()
    try:
        assert export_tiny(repository, work, NEW_CLASSES, seed=2) == 2
        shutil.copytree(repository / NAME / "2", repository / NAME / "3")
        (repository / NAME / "3" / "model.onnx").write_bytes(b"not an onnx file")
        yield server, work
    finally:
        server.stop()


def ready(url: str) -> list[str]:
    index = triton_http.InferenceServerClient(url).get_model_repository_index()
    return sorted(str(e["version"]) for e in index if e["name"] == NAME and e.get("state") == "READY")


def test_deploy_failures_and_rollback_keep_serving(served: tuple[TritonServer, Path]) -> None:
    server, work = served
    store = LifecycleStore(work / "lifecycle.sqlite")
    routing = Routing(store)
    switched: list[tuple[str, str]] = []
    deployer = Deployer(server.http_url, RepositoryView(work / "repo"), store, routing,
                        settings=DeploySettings(drain_s=0.5), on_switch=lambda n, v: switched.append((n, v)))
    assert deployer.serving_version(NAME) == "1" and ready(server.http_url) == ["1"]
    with pytest.raises(NothingToRollBack):
        deployer.rollback(NAME)
    client = Client(server.http_url, routing)
    client.start()
    try:
        result = deployer.deploy(NAME, 2)
        assert result["changed"] and result["previous"] == "1" and result["previous_unloaded"]
        assert routing.serving_version(NAME) == "2" and ready(server.http_url) == ["2"]
        with pytest.raises(DeployError, match="version 2 still serves"):
            deployer.deploy(NAME, 3)  # broken model file: fails to load
        assert routing.serving_version(NAME) == "2" and ready(server.http_url) == ["2"]
        with pytest.raises(VersionNotFound):
            deployer.deploy(NAME, 9)
        for _ in range(2):
            assert deployer.rollback(NAME)["version"] == "1"
            assert deployer.deploy(NAME, "2")["version"] == "2"
        assert deployer.deploy(NAME, 2)["changed"] is False
        assert deployer.rollback(NAME)["version"] == "1"
    finally:
        client.stop.set()
        client.join(30)
    assert client.failures == []
    assert len(client.versions) > 10 and {"1", "2"} <= set(client.versions)
    assert ready(server.http_url) == ["1"] and switched[-1] == (NAME, "1")
    assert store.deployment(NAME).stack == ("1",)
    assert [h["action"] for h in store.history(NAME)] == ["deploy", "rollback", "deploy", "rollback", "deploy",
                                                          "rollback"]
    status = deployer.status(NAME)
    assert status["serving_version"] == "1" and status["versions"] == ["1", "2", "3"]

    # a fresh Triton loads what config.pbtxt says (the newest version); the watcher brings back the deployed one
    shutil.rmtree(work / "repo" / NAME / "3")
    server.stop()
    server.start()
    assert ready(server.http_url) == ["2"]
    watcher = DeploymentWatcher(Deployer(server.http_url, RepositoryView(work / "repo"), store, Routing(store)))
    assert watcher.check_once() is True
    assert ready(server.http_url) == ["1"]
    assert watcher.check_once() is False


def test_deploy_loads_a_model_triton_does_not_serve_yet(served: tuple[TritonServer, Path]) -> None:
    """...under the longest dotted name the naming rule allows: what export accepts, Triton serves and deploys."""
    server, work = served
    name = "new.model-" + "x" * (MODEL_NAME_MAX_LENGTH - 10)
    assert export_tiny(work / "repo", work, OLD_CLASSES, seed=3, name=name) == 1
    store = LifecycleStore(work / "other.sqlite")
    deployer = Deployer(server.http_url, RepositoryView(work / "repo"), store, Routing(store))
    assert deployer.serving_version(name) is None
    result = deployer.deploy(name, 1)
    assert result["changed"] and result["previous"] is None
    assert deployer.ready_versions(name) == ["1"] and store.deployment(name).stack == ("1",)
    with pytest.raises(NothingToRollBack):
        deployer.rollback(name)
