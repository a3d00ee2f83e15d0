"""Deploys and rollbacks on a fleet of two real bundled Triton servers sharing one model repository, with a
client per Triton sending requests throughout and routing as the gateways do (the published serving version); the
order of a switch's writes when one of them fails; the reconcile loop driving both Tritons to what is published."""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from contracts.model_repository import MODEL_NAME_MAX_LENGTH
from contracts.triton_config import read_serving_version
from lomar_serve.common.holds import VersionHold
from lomar_serve.control_plane.deploy import Deployer, DeploySettings, with_versions
from lomar_serve.control_plane.reconcile import Reconciler, ReconcileSettings
from lomar_serve.gateway.routing import PublishedRouting
from lomar_serve.jobs.errors import (DeployError, HistoryConflict, NothingToRollBack, SwitchInProgress,
                                     VersionNotFound)
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
    summaries = {summary["model"]: summary for summary in deployer.summaries()}  # GET /v1/admin/models
    assert summaries[NAME] == {key: status[key] for key in ("model", "serving_version", "deployed", "rollback_target",
                                                              "versions")}


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
    # the model's first deploy says what happened and is the first entry of its history
    assert result["previous"] is None and result["recorded"] is True
    assert "first deployed version" in result["message"] and "loaded and smoke-tested" in result["message"]
    assert [(h["action"], h["version"], h["previous"]) for h in store.history(name)] == [("deploy", "1", None)]
    again = deployer.deploy(name, 1)
    assert (again["changed"], again["previous"]) == (False, "1") and "already serves" in again["message"]
    assert len(store.history(name)) == 1 and store.deployment(name).stack == ("1",)
    with pytest.raises(NothingToRollBack):
        deployer.rollback(name)


def other_than(version: str | None) -> str:
    return "2" if version == "1" else "1"


def test_the_reconciler_drives_every_triton_to_the_published_versions(
        fleet: tuple[list[TritonServer], Path]) -> None:
    """What an interrupted switch leaves (both versions loaded), a Triton that lost the published version, a model
    exported after the Tritons started: one pass fixes them all - but keeps a held version, and every loaded
    version within drain_s of a change of config.pbtxt."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    repository = work / "repo"
    deployer = Deployer(urls, RepositoryView(repository), LifecycleStore(work / "reconcile.sqlite"))
    reconciler = Reconciler(deployer, ReconcileSettings(drain_s=0.0))
    reconciler.run_once()  # whatever the tests before left (the hold test switched one Triton only)
    published = read_serving_version(repository / NAME)
    other = other_than(published)
    assert [ready(url) for url in urls] == [[published], [published]]
    config = deployer.config(NAME)
    for node in deployer.nodes:
        node.load(NAME, with_versions(config, {published, other}))
    deployer.nodes[1].load(NAME, with_versions(config, {other}))
    assert export_tiny(repository, work, OLD_CLASSES, seed=4, name="late_model") == 1
    assert [ready(url) for url in urls] == [sorted([published, other]), [other]]
    # config.pbtxt of NAME changed within the last hour: nothing of NAME is unloaded; what is missing is loaded
    assert Reconciler(deployer, ReconcileSettings(drain_s=3600)).run_once() == [
        f"{urls[0]}: late_model 1", f"{urls[1]}: late_model 1", f"{urls[1]}: {NAME} 1 2"]
    assert [ready(url) for url in urls] == [sorted([published, other]), sorted([published, other])]
    assert [ready(url, "late_model") for url in urls] == [["1"], ["1"]]
    with deployer.exclusive("a test standing for a switch"):
        assert reconciler.run_once() == []  # never fights a switch
    assert [ready(url) for url in urls] == [sorted([published, other])] * 2
    with VersionHold(repository / NAME, other, holder="reindexing-gateway"):
        assert reconciler.run_once() == []  # held: kept
    assert reconciler.run_once() == [f"{url}: {NAME} {published}" for url in urls]
    assert [ready(url) for url in urls] == [[published], [published]]
    assert reconciler.run_once() == []  # converged: nothing more to do


@pytest.mark.parametrize("failing", ["begin_switch", "publish"])
def test_a_switch_whose_note_or_publish_cannot_be_written_changes_nothing(
        fleet: tuple[list[TritonServer], Path], monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A full disk under the store (before the publish) or under the repository (the publish itself): the deploy
    fails, nothing is published or recorded, and the target is unloaded again."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    repository = work / "repo"
    store = LifecycleStore(work / f"fail-{failing}.sqlite")
    deployer = Deployer(urls, RepositoryView(repository), store, settings=DeploySettings(drain_s=0.1))
    before = read_serving_version(repository / NAME)

    def store_full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")
    if failing == "begin_switch":
        monkeypatch.setattr(store, "begin_switch", store_full)
    else:
        monkeypatch.setattr("lomar_serve.control_plane.deploy.publish_serving_version", disk_full)
    with pytest.raises(DeployError, match="cannot be written") as raised:
        deployer.deploy(NAME, other_than(before))
    assert f"version {before} still serves" in raised.value.message
    assert read_serving_version(repository / NAME) == before
    assert [ready(url) for url in urls] == [[before], [before]]
    assert store.deployment(NAME).stack == () and store.history(NAME) == [] and store.pending_switches() == {}


def test_a_history_that_cannot_be_written_after_the_publish_is_repaired(
        fleet: tuple[list[TritonServer], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails between the publish and the record: the switch stands (recorded: false); a rollback then
    answers 409 with the repaired history instead of `changed: false`, and the reconcile loop repairs it too."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    repository = work / "repo"
    store = LifecycleStore(work / "fail-record.sqlite")
    deployer = Deployer(urls, RepositoryView(repository), store, settings=DeploySettings(drain_s=0.1))
    first = read_serving_version(repository / NAME)
    second = other_than(first)

    def lost(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")
    with monkeypatch.context() as patch:
        patch.setattr(store, "complete_switch", lost)
        result = deployer.deploy(NAME, second)
    assert result["changed"] and result["recorded"] is False and result["previous_unloaded"]
    assert read_serving_version(repository / NAME) == second and [ready(url) for url in urls] == [[second]] * 2
    assert store.deployment(NAME).stack == () and store.pending_switch(NAME) is not None
    with pytest.raises(HistoryConflict, match=f"publishes version {second}.*a rollback now serves version {first}"):
        deployer.rollback(NAME)
    assert store.deployment(NAME).stack == (first, second) and store.pending_switches() == {}
    assert read_serving_version(repository / NAME) == second  # the refused rollback switched nothing
    assert deployer.rollback(NAME)["version"] == first  # sent again: done
    with monkeypatch.context() as patch:
        patch.setattr(store, "complete_switch", lost)
        assert deployer.deploy(NAME, second)["recorded"] is False
    assert Reconciler(deployer).run_once() == [f"{NAME}: history deploy {second}"]
    assert store.deployment(NAME).stack == (first, second)
    assert [(h["action"], h["version"]) for h in store.history(NAME)] == [("deploy", second), ("rollback", first),
                                                                          ("deploy", second)]


def test_a_second_switch_is_refused_at_once_while_one_runs(fleet: tuple[list[TritonServer], Path]) -> None:
    """The first deploy is held at its `published` step (the pause hook); a second deploy and a rollback are
    refused at once, and the reconcile loop leaves both loaded versions alone (it would unload the old one)."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    repository = work / "repo"
    pause = work / "pause"
    pause.mkdir(exist_ok=True)
    (pause / "published").touch()
    deployer = Deployer(urls, RepositoryView(repository), LifecycleStore(work / "second.sqlite"),
                        settings=DeploySettings(drain_s=0.1, pause_dir=pause))
    before = read_serving_version(repository / NAME)
    target = other_than(before)
    outcome: dict[str, object] = {}
    switching = threading.Thread(target=lambda: outcome.update(deployer.deploy(NAME, target)))
    switching.start()
    try:
        deadline = time.monotonic() + 120
        while not (pause / "published.reached").exists():
            assert time.monotonic() < deadline and switching.is_alive(), "the deploy never reached `published`"
            time.sleep(0.05)
        for second in (lambda: deployer.deploy(NAME, before), lambda: deployer.rollback(NAME)):
            started = time.monotonic()
            with pytest.raises(SwitchInProgress, match=f"the deploy of {NAME} version {target} is in progress"):
                second()
            assert time.monotonic() - started < 1.0
        assert Reconciler(deployer, ReconcileSettings(drain_s=0.0)).run_once() == []
        assert [ready(url) for url in urls] == [sorted([before, target])] * 2
    finally:
        (pause / "published").unlink()
        switching.join(120)
    assert outcome["version"] == target and [ready(url) for url in urls] == [[target]] * 2


def test_a_hold_stamped_in_the_future_does_not_block_a_deploy_past_the_drain(
        fleet: tuple[list[TritonServer], Path]) -> None:
    """A gateway whose clock runs an hour ahead left a hold behind: it is not fresh, so the deploy unloads the old
    version after the drain instead of waiting `hold_s`."""
    servers, work = fleet
    urls = [server.http_url for server in servers]
    repository = work / "repo"
    before = read_serving_version(repository / NAME)
    hold = repository / NAME / ".holds" / str(before) / "gateway-from-the-future"
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.touch()
    future = time.time() + 3600
    os.utime(hold, (future, future))
    deployer = Deployer(urls, RepositoryView(repository), LifecycleStore(work / "future.sqlite"),
                        settings=DeploySettings(drain_s=0.1, hold_s=120))
    result = deployer.deploy(NAME, other_than(before))
    assert result["previous_unloaded"] and result["seconds"] < 60, result
    assert [ready(url) for url in urls] == [[other_than(before)]] * 2
