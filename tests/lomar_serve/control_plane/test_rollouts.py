"""The control plane's side of a rollout, without Tritons (one at an address nothing answers): the admin API's canary
and shadow requests and their validation, the guard loop advancing and rolling back on the gateways' reports, deploys
refused while a rollout is active, manual abort, and the reconcile step making the store, config.pbtxt and the
published file agree after a crash. (tests/lomar_serve/fleet/test_fleet_rollouts.py runs rollouts on a real fleet.)"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.model_repository import CONFIG_FILE
from contracts.triton_config import publish_serving_version
from lomar_serve.common.rollout_figures import GuardReport, StepFigures, write_report
from lomar_serve.common.rollouts import PublishedRollout, publish_rollout, read_rollout, rollout_path
from lomar_serve.control_plane.reconcile import drift
from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.jobs.rollouts import RolloutPlan
from tests.lomar_serve.control_plane.conftest import AUTH, admin_app

NAME = "m"
CONFIG = 'name: "m"\nversion_policy { specific { versions: 1 } }\nmax_batch_size: 8\n'


@pytest.fixture()
def api(tmp_path: Path) -> tuple[TestClient, Lifecycle]:
    app, lifecycle = admin_app(tmp_path, rollout_lease_s=30.0, deploy_drain_s=0.0)
    model = tmp_path / "repo" / NAME
    for version in ("1", "2", "3"):
        (model / version).mkdir(parents=True)
    (model / CONFIG_FILE).write_text(CONFIG)
    with TestClient(app) as client:
        yield client, lifecycle


def running(lifecycle: Lifecycle, plan: RolloutPlan = RolloutPlan("canary", (10, 50), min_requests=20,
                                                                  min_seconds=0)) -> str:
    """A rollout of version 2 as begin() records and publishes it once every Triton has loaded it."""
    record = lifecycle.store.create_rollout("r1", NAME, "1", "2", plan)
    publish_rollout(lifecycle.repository.model_dir(NAME), record.published(30.0))
    return record.id


def report(lifecycle: Lifecycle, step: int, *, errors: int = 0, calls: int = 40, gateway: str = "gw-a") -> None:
    figures = StepFigures()
    for _ in range(calls):
        figures.version("1").observe(0.01, [0.9])
        figures.version("2").observe(0.01, [0.9])
    figures.version("2").errors = errors
    figures.agreement.top1_compared = figures.agreement.top1_agreed = calls
    figures.agreement.confidence_baseline = figures.agreement.confidence_candidate = calls * 0.9
    write_report(lifecycle.repository.model_dir(NAME), GuardReport(gateway, "r1", step, figures))


def published(lifecycle: Lifecycle) -> PublishedRollout | None:
    return read_rollout(lifecycle.repository.model_dir(NAME))


def test_a_rollout_whose_candidate_cannot_load_changes_nothing(api: tuple[TestClient, Lifecycle]) -> None:
    client, lifecycle = api
    response = client.post(f"/v1/admin/models/{NAME}/deploy", json={"version": 2, "canary": 10}, headers=AUTH)
    assert response.status_code == 409 and response.json()["error"]["code"] == "deploy_failed", response.text
    assert lifecycle.store.latest_rollout(NAME) is None and published(lifecycle) is None
    assert client.get(f"/v1/admin/models/{NAME}/rollout", headers=AUTH).status_code == 404
    assert client.get(f"/v1/admin/models/{NAME}", headers=AUTH).json()["rollout"] is None
    for action in ("promote", "abort"):
        refused = client.post(f"/v1/admin/models/{NAME}/rollout/{action}", headers=AUTH)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "rollout_not_found"


@pytest.mark.parametrize("body", [
    {"version": 2, "canary": 10, "shadow": 10},  # both
    {"version": 2, "canary": {"steps": [10, 10]}},  # a step twice (written in any order, they are sorted)
    {"version": 2, "canary": 100},  # 100 % is the promotion
    {"version": 2, "canary": {"steps": []}},
    {"version": 2, "shadow": {"steps": [10], "guards": {"min_agreement": 2}}},
    {"version": 2, "shadow": {"steps": [10], "guards": {"max_typo": 1}}},
    {"version": 2, "canary": True},
])
def test_rollout_requests_are_validated(api: tuple[TestClient, Lifecycle], body: dict) -> None:
    client, _ = api
    response = client.post(f"/v1/admin/models/{NAME}/deploy", json=body, headers=AUTH)
    assert response.status_code == 422, response.text


def test_the_guard_loop_advances_on_passing_reports_and_rolls_back_when_a_guard_trips(
        api: tuple[TestClient, Lifecycle]) -> None:
    client, lifecycle = api
    running(lifecycle)
    assert lifecycle.rollouts.tick() == []  # no figures yet: it waits
    report(lifecycle, 0, calls=12)
    report(lifecycle, 0, calls=12, gateway="gw-b")  # 24 requests over two gateways: enough
    report(lifecycle, 1, calls=99, errors=99, gateway="gw-c")  # another step's figures are not this step's
    assert lifecycle.rollouts.tick() == [f"{NAME}: 50 %"]
    assert (published(lifecycle).step, published(lifecycle).percent) == (1, 50.0)
    status = client.get(f"/v1/admin/models/{NAME}", headers=AUTH).json()["rollout"]
    assert (status["state"], status["step"], status["percent"]) == ("running", 1, 50.0)
    assert status["events"][-1]["action"] == "advanced"
    report(lifecycle, 1, errors=10)
    done = lifecycle.rollouts.tick()
    assert len(done) == 1 and "rolled back" in done[0]
    rollout = client.get(f"/v1/admin/models/{NAME}/rollout", headers=AUTH).json()
    assert rollout["state"] == "rolled_back" and "error rate" in rollout["reason"]
    assert rollout["figures"]["versions"]["2"]["errors"] == 109
    assert {c["guard"]: c["status"] for c in rollout["checks"]}["error_rate"] == "trip"
    assert published(lifecycle).state == "rolled_back"


def test_deploys_wait_for_an_active_rollout_and_an_operator_may_abort_it(api: tuple[TestClient, Lifecycle]) -> None:
    client, lifecycle = api
    running(lifecycle)
    for action, body in (("deploy", {"json": {"version": 3}}), ("rollback", {}),
                         ("deploy", {"json": {"version": 3, "shadow": 5}})):
        refused = client.post(f"/v1/admin/models/{NAME}/{action}", headers=AUTH, **body)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "rollout_in_progress", refused.text
    aborted = client.post(f"/v1/admin/models/{NAME}/rollout/abort", headers=AUTH)
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted", aborted.text
    assert "by an operator" in aborted.json()["reason"] and published(lifecycle).state == "aborted"
    refused = client.post(f"/v1/admin/models/{NAME}/rollout/abort", headers=AUTH)
    assert refused.status_code == 404


def test_the_reconcile_step_makes_store_config_and_file_agree(api: tuple[TestClient, Lifecycle]) -> None:
    _, lifecycle = api
    model_dir = lifecycle.repository.model_dir(NAME)
    running(lifecycle)
    # the store advanced, then the control plane died before publishing: the file catches up
    lifecycle.store.move_rollout("r1", ("running",), "running", at_step=0, next_step=True)
    assert published(lifecycle).step == 0
    assert lifecycle.rollouts.reconcile() == [f"{NAME}: rollout file published"]
    assert published(lifecycle).step == 1 and lifecycle.rollouts.reconcile() == []
    # promoting when the control plane died, after the promotion's switch: promoted
    lifecycle.store.move_rollout("r1", ("running",), "promoting")
    publish_serving_version(model_dir, 2)
    assert f"{NAME}: rollout promoted" in lifecycle.rollouts.reconcile()
    assert lifecycle.store.rollout("r1").state == "promoted" and published(lifecycle).state == "promoted"
    # a running rollout published that the store does not know (a store restored from a backup): published aborted
    publish_serving_version(model_dir, 1)
    publish_rollout(model_dir, PublishedRollout("r9", NAME, "shadow", "1", "3", 0, 20.0, "running", 30.0))
    lifecycle.rollouts.reconcile()
    assert published(lifecycle).state == "promoted"  # the store's latest rollout of the model, r1
    # the serving version changed outside a running rollout: aborted
    lifecycle.store.create_rollout("r2", NAME, "1", "2", RolloutPlan("canary", (10,)))
    publish_serving_version(model_dir, 3)
    lifecycle.rollouts.reconcile()
    assert lifecycle.store.rollout("r2").state == "aborted" and "outside the rollout" in \
        lifecycle.store.rollout("r2").reason


def test_the_reconciler_keeps_a_running_rollouts_candidate_loaded() -> None:
    index = [{"name": NAME, "version": v, "state": "READY"} for v in ("1", "2", "3")]
    with_candidate = drift(index, NAME, "1", set(), frozenset({"2"}))
    assert with_candidate.keep == {"1", "2"} and with_candidate.extra == ("3",) and not with_candidate.missing
    assert drift(index[:1], NAME, "1", set(), frozenset({"2"})).missing  # a Triton restarted mid-rollout
    assert drift(index, NAME, "1", set()).extra == ("2", "3")  # no rollout: both go


def test_a_rollout_lease_is_renewed_by_the_guard_loop(api: tuple[TestClient, Lifecycle]) -> None:
    _, lifecycle = api
    running(lifecycle)
    path = rollout_path(lifecycle.repository.model_dir(NAME))
    os.utime(path, (time.time() - 25,) * 2)
    lifecycle.rollouts.tick()
    assert abs(path.stat().st_mtime - time.time()) < 5
