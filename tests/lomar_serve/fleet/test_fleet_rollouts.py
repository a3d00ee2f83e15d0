"""Canary and shadow rollouts on the one-machine fleet (conftest.py: two `lomar triton`, two gateways, the control
plane, a worker), with a client sending requests through each gateway throughout; every candidate is a copy of the
serving version's folder, changed as each test needs:
- a good version under canary 10 % -> 50 %: promoted, no failed request, each gateway's share of the candidate within
  a few points of P at each step; a pinned version answers as pinned;
- a version whose model.py fails on bright images: rolled back by the error-rate guard, and no client saw its errors
  (a canary call the candidate fails is answered by the baseline);
- a version five times slower (a sleep in its model.py): rolled back by the latency guard;
- a version with permuted labels under shadow: no client ever gets its answers, the agreement guard rolls it back,
  and the API and `lomar rollout status` say why;
- the control plane SIGKILLed after recording a step but before publishing it: the gateways go on at the step they
  had until the lease runs out, then serve the baseline alone; restarted, it publishes the step the store knows and
  the rollout resumes; SIGKILLed again after the promotion's switch but before recording it: restarted, the rollout
  is recorded promoted and every Triton serves the candidate alone.
Every wait polls a condition with a deadline.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import numpy as np
import pytest

from contracts.model_card import ModelCard
from contracts.model_repository import PYTHON_FILE
from contracts.triton_config import read_serving_version
from lomar_serve.common.rollouts import read_rollout
from tests.lomar_serve.fleet.conftest import (AUTH, NAME, REPO, TOKEN, Answer, Fleet, Load, started_fleet,
                                              traffic)
from tests.lomar_serve.fleet.test_fleet_faults import (CONVERGE_S, STEP_TIMEOUT_S, converged, loaded,
                                                       restart_control_plane, wait_for)
from tests.lomar_serve.photos import encode

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
LEASE_S = 6.0
DECISION_S = 240.0  # a rollout reaching its decision on a busy machine
RNG = np.random.default_rng(7)
DARK = encode(np.clip(RNG.normal(60, 25, (64, 64, 3)), 0, 255).astype(np.uint8), "PNG")
BRIGHT = encode(np.clip(RNG.normal(215, 25, (64, 64, 3)), 0, 255).astype(np.uint8), "PNG")
# Latency noise of a machine shared with other jobs is not what these tests are about where no slowness is tested.
LENIENT_LATENCY = {"max_p50_ratio": 3.0, "max_p99_ratio": 10.0, "latency_slack_ms": 150.0}
NEVER_ON_ITS_OWN = {"min_requests": 1_000_000, "min_seconds": 3600}  # only a guard ends these rollouts
FIGURES: dict[str, object] = {}  # what was measured, printed at the end of the module
FAILS_ON_BRIGHT_IMAGES = '''

_execute = TritonPythonModel.execute


def _fail_on_bright_images(self, requests):
    responses = _execute(self, requests)
    for index, request in enumerate(requests):
        image = pb_utils.get_input_tensor_by_name(request, "image")
        if image is not None and float(image.as_numpy().mean()) > 160:
            responses[index] = error_response("this version fails on bright images", pb_utils.TritonError.INTERNAL)
    return responses


TritonPythonModel.execute = _fail_on_bright_images
'''
FIVE_TIMES_SLOWER = '''

import time as _time

_execute = TritonPythonModel.execute


def _slowly(self, requests):
    _time.sleep(0.25)
    return _execute(self, requests)


TritonPythonModel.execute = _slowly
'''


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, new_postgres_database: Callable[[], str]) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("rollouts")
    (work / "pause").mkdir()
    yield from started_fleet(work, new_postgres_database(), {
        "LOMAR_DEPLOY_PAUSE_DIR": str(work / "pause"), "LOMAR_ROLLOUT_INTERVAL_S": "0.5",
        "LOMAR_ROLLOUT_LEASE_S": str(LEASE_S), "LOMAR_ROLLOUT_REPORT_INTERVAL_S": "0.5"})
    print("\nrollout figures:", FIGURES)


def fleet_traffic(fleet: Fleet, images: tuple[bytes, ...] = (DARK,)) -> AbstractContextManager[list[Load]]:
    """conftest.traffic through every gateway of the fleet, with the images given (dark by default)."""
    return traffic(fleet.gateway_urls, images, min_answers=20)


def admin(fleet: Fleet) -> httpx.Client:
    return httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=600)


def serving(fleet: Fleet) -> str:
    version = read_serving_version(fleet.repository / NAME)
    assert version is not None
    return version


def new_version(fleet: Fleet, runner_addition: str = "", rotate_labels: bool = False) -> str:
    """A copy of the serving version as the next version of the model: the same weights, its model.py with
    `runner_addition` appended, its labels rotated by one."""
    model = fleet.repository / NAME
    version = str(max(int(path.name) for path in model.iterdir() if path.name.isdigit()) + 1)
    shutil.copytree(model / serving(fleet), model / version)
    if runner_addition:
        with open(model / version / PYTHON_FILE, "a") as runner:
            runner.write(runner_addition)
    if rotate_labels:
        card = ModelCard.read(model / version)
        ModelCard.from_dict({**card.to_dict(), "classes": [*card.classes[1:], card.classes[0]]}).write(model / version)
    return version


def begin(fleet: Fleet, version: str, mode: str, request: dict) -> dict:
    with admin(fleet) as client:
        response = client.post(f"/v1/admin/models/{NAME}/deploy", json={"version": int(version), mode: request})
    assert response.status_code == 200, response.text
    rollout = response.json()
    assert (rollout["state"], rollout["candidate"], rollout["mode"]) == ("running", version, mode), rollout
    return rollout


def rollout_status(fleet: Fleet) -> dict:
    with admin(fleet) as client:
        return client.get(f"/v1/admin/models/{NAME}/rollout").json()


def follow(fleet: Fleet, until: Callable[[dict], bool], timeout_s: float = DECISION_S) -> list[tuple[float, dict]]:
    """Poll the rollout until `until(status)`; every (monotonic time, status) seen."""
    seen: list[tuple[float, dict]] = []

    def reached() -> bool:
        seen.append((time.monotonic(), rollout_status(fleet)))
        return until(seen[-1][1])

    wait_for(reached, "the rollout's decision", timeout_s,
             lambda: f"{seen[-1][1] if seen else ''}\n{fleet.log_tail('control-plane')}")
    return seen


def share(answers: list[Answer], version: str) -> float:
    return sum(answer.version == version for answer in answers) / len(answers)


def calls(fleet: Fleet, gateway: int, version: str, outcome: str) -> float:
    """lomar_version_calls_total of a gateway for the classifier's `version` with `outcome`, all roles."""
    text = httpx.get(f"{fleet.gateway_urls[gateway]}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("lomar_version_calls_total{") and f'model="{NAME}"' in line and \
                f'version="{version}"' in line and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_good_version_is_promoted_step_by_step_with_each_gateway_on_its_share(fleet: Fleet) -> None:
    baseline = serving(fleet)
    candidate = new_version(fleet)
    with fleet_traffic(fleet) as loads:
        rollout = begin(fleet, candidate, "canary", {"steps": [10, 50], "min_requests": 40, "min_seconds": 10,
                                                    "guards": LENIENT_LATENCY})
        with httpx.Client(base_url=fleet.gateway_urls[0], timeout=30) as client:
            for pinned, words in ((baseline, ""), (candidate, ""), ("2", "is not served"), ("99", "no version 99")):
                response = client.post("/v1/classify", content=DARK, params={"version": pinned},
                                       headers={"content-type": "image/png"})
                if words:  # version 2 is on disk but not loaded; 99 does not exist
                    assert response.status_code == 404 and words in response.json()["error"]["message"], \
                        response.text
                else:
                    assert response.status_code == 200 and response.json()["model_version"] == pinned
        seen = follow(fleet, lambda status: status["state"] not in ("running",))
        wait_for(lambda: rollout_status(fleet)["state"] == "promoted", "the promotion", STEP_TIMEOUT_S)
    final = rollout_status(fleet)
    assert final["state"] == "promoted" and final["id"] == rollout["id"], final
    assert [e["action"] for e in final["events"]] == ["started", "advanced", "promoting", "promoted"]
    assert serving(fleet) == candidate
    with admin(fleet) as client:
        history = client.get(f"/v1/admin/models/{NAME}").json()["history"]
    assert (history[-1]["action"], history[-1]["version"], history[-1]["previous"]) == ("deploy", candidate, baseline)
    # each gateway's share of the candidate at each step, from the answers its client got
    changes = [(at, status["step"], status["state"]) for at, status in seen]
    for step, percent in enumerate((10.0, 50.0)):
        start = next(at for at, index, state in changes if index == step)
        end = next(at for at, index, state in changes if index > step or state != "running")
        for load in loads:
            window = load.between(start + 1.0, end - 0.3)  # gateways follow within their routing interval
            FIGURES[f"{load.url} share at {percent:g} %"] = f"{share(window, candidate):.1%} of {len(window)}"
            assert len(window) >= 40, f"{load.url}: {len(window)} answers at {percent} %"
            assert abs(share(window, candidate) - percent / 100) <= 0.05, \
                f"{load.url}: {share(window, candidate):.1%} of {len(window)} answers at {percent} %"
    wait_for(lambda: converged(fleet), "the baseline unloaded", CONVERGE_S, lambda: str(loaded(fleet)))


def test_a_version_that_fails_on_some_images_is_rolled_back_and_no_client_sees_its_errors(fleet: Fleet) -> None:
    baseline = serving(fleet)
    candidate = new_version(fleet, FAILS_ON_BRIGHT_IMAGES)
    before = [calls(fleet, gateway, candidate, "error") for gateway in (0, 1)]
    with fleet_traffic(fleet, (DARK, BRIGHT)) as loads:
        begin(fleet, candidate, "canary", {"steps": [20], **NEVER_ON_ITS_OWN, "guards": LENIENT_LATENCY})
        follow(fleet, lambda status: status["state"] != "running")
    final = rollout_status(fleet)
    assert final["state"] == "rolled_back" and "error rate" in final["reason"], final
    FIGURES["failing version"] = final["reason"]
    assert {c["guard"]: c["status"] for c in final["checks"]}["error_rate"] == "trip"
    assert serving(fleet) == baseline
    for load in loads:  # it answered the dark images it was given; the bright ones went back to the baseline
        assert any(a.version == candidate and a.image == 0 for a in load.answers)
        assert not any(a.version == candidate and a.image == 1 for a in load.answers)
    assert sum(calls(fleet, gateway, candidate, "error") for gateway in (0, 1)) > sum(before)
    wait_for(lambda: converged(fleet), "the candidate unloaded", CONVERGE_S, lambda: str(loaded(fleet)))


def test_a_version_five_times_slower_trips_the_latency_guard(fleet: Fleet) -> None:
    baseline = serving(fleet)
    candidate = new_version(fleet, FIVE_TIMES_SLOWER)
    with fleet_traffic(fleet):
        begin(fleet, candidate, "canary", {"steps": [20], **NEVER_ON_ITS_OWN})  # the default guards
        follow(fleet, lambda status: status["state"] != "running")
    final = rollout_status(fleet)
    assert final["state"] == "rolled_back" and "latency_p" in final["reason"], final
    FIGURES["slow version"] = final["reason"]
    assert serving(fleet) == baseline and "trip" in {c["status"] for c in final["checks"] if "latency" in c["guard"]}
    wait_for(lambda: converged(fleet), "the candidate unloaded", CONVERGE_S, lambda: str(loaded(fleet)))


def test_a_shadowed_version_with_permuted_labels_is_never_seen_and_rolled_back_for_disagreeing(fleet: Fleet) -> None:
    baseline = serving(fleet)
    candidate = new_version(fleet, rotate_labels=True)
    with fleet_traffic(fleet, (DARK, BRIGHT)) as loads:
        begin(fleet, candidate, "shadow", {"steps": [30], **NEVER_ON_ITS_OWN, "guards": LENIENT_LATENCY})
        follow(fleet, lambda status: status["state"] != "running")
    for load in loads:
        assert {answer.version for answer in load.answers} == {baseline}
    with admin(fleet) as client:
        status = client.get(f"/v1/admin/models/{NAME}").json()
    rollout = status["rollout"]
    assert status["serving_version"] == baseline and rollout["state"] == "rolled_back", rollout
    assert "top-1 agreement 0.0%" in rollout["reason"], rollout["reason"]
    FIGURES["permuted labels"] = rollout["reason"]
    assert rollout["figures"]["agreement"]["top1_compared"] >= 20
    shown = subprocess.run([sys.executable, "-m", "lomar_serve.cli", "rollout", "status", NAME, "--url",
                            fleet.control_url, "--token", TOKEN], capture_output=True, text=True, cwd=REPO,
                           timeout=60, check=True).stdout
    assert "rolled_back" in shown and "trip    agreement" in shown, shown
    wait_for(lambda: converged(fleet), "the candidate unloaded", CONVERGE_S, lambda: str(loaded(fleet)))


def test_a_control_plane_killed_mid_rollout_resumes_it_and_records_its_promotion(fleet: Fleet) -> None:
    pause = fleet.work / "pause"
    baseline = serving(fleet)
    candidate = new_version(fleet)
    (pause / "step-recorded").touch()
    with fleet_traffic(fleet) as loads:
        rollout = begin(fleet, candidate, "canary", {"steps": [20, 50], "min_requests": 30, "min_seconds": 4,
                                                    "guards": LENIENT_LATENCY})
        wait_for((pause / "step-recorded.reached").exists, "step 2 recorded", DECISION_S,
                 lambda: fleet.log_tail("control-plane"))
        fleet.stop("control-plane", signal.SIGKILL)  # the store says 50 %, the file still 20 %
        killed = time.monotonic()
        for name in ("step-recorded", "step-recorded.reached"):
            (pause / name).unlink()
        assert read_rollout(fleet.repository / NAME).percent == 20.0
        time.sleep(LEASE_S + 2.0)  # nobody renews the rollout: every gateway back on the baseline
        quiet = time.monotonic()
        time.sleep(3.0)
        for load in loads:
            alone = load.between(quiet, time.monotonic())
            assert alone and {answer.version for answer in alone} == {baseline}, f"{load.url}: {alone[-5:]}"
            assert any(a.version == candidate for a in load.between(killed - 5.0, killed))  # it ran before
        (pause / "rollout-switched").touch()
        started = restart_control_plane(fleet)
        published = read_rollout(fleet.repository / NAME)  # published again before the admin API answered
        assert (published.id, published.percent, published.state) == (rollout["id"], 50.0, "running")
        resumed = time.monotonic()
        FIGURES["control plane started, the rollout published again (s)"] = round(resumed - started, 1)
        wait_for((pause / "rollout-switched.reached").exists, "the promotion's switch", DECISION_S,
                 lambda: fleet.log_tail("control-plane"))
        for load in loads:
            assert any(a.version == candidate for a in load.between(resumed, time.monotonic()))
        assert serving(fleet) == candidate  # switched, not yet recorded: SIGKILL now
        fleet.stop("control-plane", signal.SIGKILL)
        for name in ("rollout-switched", "rollout-switched.reached"):
            (pause / name).unlink()
        restart_control_plane(fleet)
    final = rollout_status(fleet)
    assert final["state"] == "promoted" and "before the control plane could record it" in final["reason"], final
    with admin(fleet) as client:
        status = client.get(f"/v1/admin/models/{NAME}").json()
    assert status["serving_version"] == candidate and status["history"][-1]["version"] == candidate
    assert read_rollout(fleet.repository / NAME).state == "promoted"
    wait_for(lambda: converged(fleet), "every Triton on the candidate alone", CONVERGE_S, lambda: str(loaded(fleet)))
