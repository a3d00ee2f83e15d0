"""Deploys and rollbacks on a fleet of two real bundled Triton servers sharing one model repository, with a
client per Triton sending requests throughout and routing as the gateways do (the published serving version)."""
from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from contracts.model_repository import MODEL_NAME_MAX_LENGTH
from contracts.triton_config import read_serving_version
from lomar_serve.common.holds import VersionHold
from lomar_serve.control_plane.deploy import Deployer, DeploySettings
from lomar_serve.gateway.routing import PublishedRouting
from lomar_serve.jobs.errors import DeployError, NothingToRollBack, VersionNotFound
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.store import LifecycleStore
from lomar_serve.triton import TritonServer, TritonServerConfig
from tests.lomar_serve.tiny_models import export_tiny

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
NAME = "lomar_classifier"
OLD_CLASSES = ["cat", "dog", "bird"]
NEW_CLASSES = ["cat", "dog", "novel_class"]


class Client(threading.Thread):
    """Sends one request after another to one Triton, asking for the routed version as a gateway does."""

    def __init__(self, url: str, routing: PublishedRouting) -> None:
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


def triton(repository: Path) -> TritonServer:
    """A Triton as `lomar serve` runs it: every model at start, a failing one neither stops it nor makes it unready."""
    return TritonServer(TritonServerConfig(model_repository=repository, exit_on_error=False, strict_readiness=False))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[TritonServer], Path]]:
    """Two Tritons serving version 1 of a tiny classifier; versions 2 (new classes) and 3 (broken) on disk."""
    work = tmp_path_factory.mktemp("deploy")
    repository = work / "repo"
    assert export_tiny(repository, work, OLD_CLASSES, seed=1) == 1
    assert export_tiny(repository, work, NEW_CLASSES, seed=2) == 2
    shutil.copytree(repository / NAME / "2", repository / NAME / "3")
    (repository / NAME / "3" / "model.onnx").write_bytes(b"not an onnx file")
    servers = [triton(repository), triton(repository)]
    try:
        for server in servers:
            server.start()
        yield servers, work
    finally:
        for server in servers:
            server.stop()


def ready(url: str, name: str = NAME) -> list[str]:
    index = triton_http.InferenceServerClient(url).get_model_repository_index()
    return sorted(str(e["version"]) for e in index if e["name"] == name and e.get("state") == "READY")


def test_fleet_deploys_failures_and_rollbacks_keep_serving(fleet: tuple[list[TritonServer], Path]) -> None:
    servers, work = fleet
    repository = work / "repo"
    urls = [server.http_url for server in servers]
    store = LifecycleStore(work / "lifecycle.sqlite")
    deployer = Deployer(urls, RepositoryView(repository), store, settings=DeploySettings(drain_s=0.5))
    # export published only the first version: Triton starts loaded version 1 and nothing else
    assert deployer.serving_version(NAME) == "1" and [ready(url) for url in urls] == [["1"], ["1"]]
    with pytest.raises(NothingToRollBack):
        deployer.rollback(NAME)
    routing = PublishedRouting(repository, interval_s=0.1)
    routing.start()
    clients = [Client(url, routing) for url in urls]
    for client in clients:
        client.start()
    try:
        result = deployer.deploy(NAME, 2)
        assert result["changed"] and result["previous"] == "1" and result["previous_unloaded"]
        assert read_serving_version(repository / NAME) == "2" and [ready(url) for url in urls] == [["2"], ["2"]]
        with pytest.raises(DeployError, match="version 2 still serves"):
            deployer.deploy(NAME, 3)  # broken model file: fails to load on the first Triton
        assert read_serving_version(repository / NAME) == "2" and [ready(url) for url in urls] == [["2"], ["2"]]
        with pytest.raises(VersionNotFound):
            deployer.deploy(NAME, 9)
        for _ in range(2):
            assert deployer.rollback(NAME)["version"] == "1"
            assert deployer.deploy(NAME, "2")["version"] == "2"
        assert deployer.deploy(NAME, 2)["changed"] is False
        assert deployer.rollback(NAME)["version"] == "1"
    finally:
        for client in clients:
            client.stop.set()
            client.join(30)
        routing.stop()
    for client in clients:
        assert client.failures == []
        assert len(client.versions) > 10 and {"1", "2"} <= set(client.versions)
    assert [ready(url) for url in urls] == [["1"], ["1"]]
    assert store.deployment(NAME).stack == ("1",)
    assert [h["action"] for h in store.history(NAME)] == ["deploy", "rollback", "deploy", "rollback", "deploy",
                                                          "rollback"]
    status = deployer.status(NAME)
    assert status["serving_version"] == "1" and status["versions"] == ["1", "2", "3"]
    assert status["loaded"] == {url: ["1"] for url in urls}


def test_a_triton_restart_loads_only_the_published_version(fleet: tuple[list[TritonServer], Path]) -> None:
    """The broken version 3 and the never-deployed newer versions stay on disk: a fresh Triton loads what
    config.pbtxt publishes, starts, and serves it."""
    servers, work = fleet
    published = read_serving_version(work / "repo" / NAME)
    servers[1].stop()
    servers[1].start()
    assert ready(servers[1].http_url) == [published]


def test_a_deploy_that_fails_on_one_triton_changes_nothing_anywhere(fleet: tuple[list[TritonServer], Path]) -> None:
    servers, work = fleet
    urls = [server.http_url for server in servers]
    store = LifecycleStore(work / "fail-one.sqlite")
    before = read_serving_version(work / "repo" / NAME)
    target = "2" if before == "1" else "1"
    deployer = Deployer([*urls, "127.0.0.1:9"], RepositoryView(work / "repo"), store,
                        settings=DeploySettings(drain_s=0.1))  # the third Triton is unreachable
    with pytest.raises(DeployError, match=f"127.0.0.1:9.*version {before} still serves"):
        deployer.deploy(NAME, target)
    assert read_serving_version(work / "repo" / NAME) == before
    assert [ready(url) for url in urls] == [[before], [before]]  # the target was unloaded again where it loaded
    assert store.deployment(NAME).stack == ()


def test_the_old_version_stays_loaded_while_a_gateway_holds_it(fleet: tuple[list[TritonServer], Path]) -> None:
    servers, work = fleet
    url = servers[0].http_url
    repository = work / "repo"
    before = read_serving_version(repository / NAME)
    target = "2" if before == "1" else "1"
    deployer = Deployer([url], RepositoryView(repository), LifecycleStore(work / "hold.sqlite"),
                        settings=DeploySettings(drain_s=0.1, hold_s=60))
    hold = VersionHold(repository / NAME, before, holder="test-gateway")
    hold.__enter__()
    outcome: dict[str, object] = {}
    switching = threading.Thread(target=lambda: outcome.update(deployer.deploy(NAME, target)))
    switching.start()
    switching.join(5.0)
    assert switching.is_alive(), "the deploy unloaded a held version"
    assert read_serving_version(repository / NAME) == target and ready(url) == sorted([before, target])
    hold.__exit__(None, None, None)
    switching.join(60)
    assert outcome["previous_unloaded"] is True and ready(url) == [target]


def test_deploy_loads_a_model_triton_does_not_serve_yet(fleet: tuple[list[TritonServer], Path]) -> None:
    """...under the longest dotted name the naming rule allows: what export accepts, Triton serves and deploys."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    name = "new.model-" + "x" * (MODEL_NAME_MAX_LENGTH - 10)
    assert export_tiny(work / "repo", work, OLD_CLASSES, seed=3, name=name) == 1
    store = LifecycleStore(work / "other.sqlite")
    deployer = Deployer(urls, RepositoryView(work / "repo"), store)
    assert deployer.serving_version(name) == "1" and ready(urls[0], name) == []  # published, not loaded yet
    result = deployer.deploy(name, 1)
    assert result["changed"] is False and [ready(url, name) for url in urls] == [["1"], ["1"]]
    with pytest.raises(NothingToRollBack):
        deployer.rollback(name)
