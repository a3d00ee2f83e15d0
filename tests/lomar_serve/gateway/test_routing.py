"""The gateway's routing follows the serving versions the model repository publishes, and the rollouts published
beside them; holds on old versions."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from contracts.model_repository import CONFIG_FILE, DEFAULT_MODEL_NAMES
from contracts.triton_config import publish_serving_version
from lomar_serve.common.holds import FRESH_S, VersionHold, active_holders, held_versions
from lomar_serve.common.rollouts import PublishedRollout, publish_rollout, rollout_path
from lomar_serve.gateway.routing import PublishedRouting

BUILTIN = Path(__file__).resolve().parents[3] / "model_repository"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(BUILTIN, tmp_path / "repo", ignore=shutil.ignore_patterns("*.onnx", "*.py"))
    return tmp_path / "repo"


def test_routing_follows_a_publish_and_reports_the_switch(repository: Path) -> None:
    switches: list[tuple[str, str, str | None]] = []
    routing = PublishedRouting(repository, on_switch=lambda *switch: switches.append(switch))
    assert routing.snapshot() == {name: "1" for name in DEFAULT_MODEL_NAMES.values()}
    assert routing.refresh() == [] and switches == []  # nothing changed
    name = DEFAULT_MODEL_NAMES["classify"]
    publish_serving_version(repository / name, 2)
    assert routing.refresh() == [(name, "2", "1")] and switches == [(name, "2", "1")]
    assert routing.serving_version(name) == "2" and routing.serving_version("unknown") is None


def test_an_unreadable_config_keeps_the_last_version(repository: Path) -> None:
    routing = PublishedRouting(repository)
    name = DEFAULT_MODEL_NAMES["classify"]
    (repository / name / CONFIG_FILE).write_text("half a conf")  # not how we write it, but never trust a file
    assert routing.refresh() == [] and routing.serving_version(name) == "1"
    assert PublishedRouting(None).serving_version(name) is None  # no repository: Triton's own policy


def test_the_routing_thread_switches_within_its_interval(repository: Path) -> None:
    routing = PublishedRouting(repository, interval_s=0.05)
    routing.start()
    try:
        name = DEFAULT_MODEL_NAMES["reconstruct"]
        publish_serving_version(repository / name, 5)
        deadline = time.monotonic() + 5
        while routing.serving_version(name) != "5":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        routing.stop()


def test_holds_are_seen_while_fresh_and_released_after(repository: Path) -> None:
    model_dir = repository / DEFAULT_MODEL_NAMES["classify"]
    assert active_holders(model_dir, "1") == []
    with VersionHold(model_dir, "1", holder="gateway-a"):
        assert active_holders(model_dir, "1") == ["gateway-a"] and active_holders(model_dir, "2") == []
        stale = time.time() - FRESH_S - 5
        os.utime(model_dir / ".holds" / "1" / "gateway-a", (stale, stale))
        assert active_holders(model_dir, "1") == []  # its holder died: a stale hold blocks nothing
    assert active_holders(model_dir, "1") == []


def test_a_hold_stamped_in_the_future_goes_stale_like_any_other(repository: Path) -> None:
    """A holder whose clock runs an hour ahead (shared storage stamps its clock) is fresh only near its stamp."""
    model_dir = repository / DEFAULT_MODEL_NAMES["classify"]
    hold = model_dir / ".holds" / "1" / "skewed-gateway"
    hold.parent.mkdir(parents=True)
    hold.touch()
    soon = time.time() + FRESH_S / 2
    os.utime(hold, (soon, soon))
    assert active_holders(model_dir, "1") == ["skewed-gateway"] and held_versions(model_dir) == {"1"}
    future = time.time() + 3600
    os.utime(hold, (future, future))
    assert active_holders(model_dir, "1") == [] and held_versions(model_dir) == set()


def test_a_hold_that_cannot_be_written_holds_nothing_and_does_not_fail(repository: Path) -> None:
    """As on a read-only repository (here: a file where the holds folder would go, which fails for root too)."""
    model_dir = repository / DEFAULT_MODEL_NAMES["classify"]
    (model_dir / ".holds").write_text("in the way")
    with VersionHold(model_dir, "1"):
        assert active_holders(model_dir, "1") == []


def test_routing_follows_a_published_rollout_while_it_runs_on_the_serving_version(repository: Path) -> None:
    name = DEFAULT_MODEL_NAMES["classify"]
    routing = PublishedRouting(repository)
    assert routing.rollout(name) is None
    rollout = PublishedRollout(id="r1", model=name, mode="canary", baseline="1", candidate="2", step=0, percent=10.0,
                               state="running", lease_s=30.0)
    publish_rollout(repository / name, rollout)
    routing.refresh()
    assert routing.rollout(name) == rollout
    publish_rollout(repository / name, replace(rollout, step=1, percent=50.0))
    routing.refresh()
    assert routing.rollout(name).percent == 50.0
    os.utime(rollout_path(repository / name), (time.time() - 60,) * 2)  # the control plane stopped renewing it
    routing.refresh()
    assert routing.rollout(name) is None
    publish_rollout(repository / name, replace(rollout, step=1, percent=50.0))  # renewed: followed again
    routing.refresh()
    assert routing.rollout(name) is not None
    publish_serving_version(repository / name, 2)  # promoted: the file still names baseline 1
    routing.refresh()
    assert routing.serving_version(name) == "2" and routing.rollout(name) is None
    publish_serving_version(repository / name, 1)
    rollout_path(repository / name).write_text("{not json")
    routing.refresh()
    assert routing.rollout(name) is None
    rollout_path(repository / name).unlink()
    routing.refresh()
    assert routing.rollout(name) is None
