"""Faults on the one-machine fleet (conftest.py: two `lomar triton`, two gateways, the control plane, a worker) and
the control plane's reconcile loop repairing them, with requests through the healthy gateways throughout:
- the control plane SIGKILLed at each step of a deploy, then restarted: within CONVERGE_S every Triton serves
  exactly the published version, nothing else stays loaded, and the deploy history and rollback agree with what
  served;
- a second switch while one runs: 409 at once;
- a Triton restarted while its model's config.pbtxt is broken, then the file fixed: it serves again, no deploy;
- a model exported after the Tritons started: /readyz names it (503) until the control plane loads it, then both
  gateways serve it.

To SIGKILL "at a step" deterministically the control plane runs with LOMAR_DEPLOY_PAUSE_DIR (the Deployer's pause
hook, real code): a deploy reaching step STEP while the file STEP exists there writes STEP.reached and waits, and
the test kills the control plane once STEP.reached appears. Every wait polls a condition with a deadline.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from contracts.model_repository import CONFIG_FILE, DEFAULT_RECONSTRUCTOR
from contracts.triton_config import read_serving_version, write_atomic
from lomar_serve.control_plane.deploy import SWITCH_STEPS
from tests.lomar_serve.fleet.conftest import AUTH, CLASSES, NAME, Fleet, classify, started_fleet, traffic
from tests.lomar_serve.tiny_models import export_tiny

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
CONVERGE_S = 30.0
STEP_TIMEOUT_S = 180.0  # a deploy reaching a step: loads on two Tritons of a busy machine
FIGURES: dict[str, float] = {}  # what took how long, printed at the end of the module


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, new_postgres_database: Callable[[], str]) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("faults")
    (work / "pause").mkdir()
    yield from started_fleet(work, new_postgres_database(), {"LOMAR_DEPLOY_PAUSE_DIR": str(work / "pause")})
    print("\nconvergence figures (s):", {what: round(seconds, 1) for what, seconds in FIGURES.items()})


def wait_for(condition: Callable[[], object], what: str, timeout_s: float, context: Callable[[], str] = str) -> float:
    """Poll `condition` until it is true; the seconds it took. Fails with `what` (and `context()`) after timeout_s."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s:.0f} s\n{context()}"
        time.sleep(0.2)
    return time.monotonic() - started


def ready_on(port: int, name: str) -> list[str]:
    index = httpx.post(f"http://127.0.0.1:{port}/v2/repository/index", timeout=10).json()
    return sorted((str(e["version"]) for e in index if e["name"] == name and e.get("state") == "READY"), key=int)


def loaded(fleet: Fleet) -> dict[str, list[list[str]]]:
    """Every published model -> the ready versions on each Triton."""
    models = [path.parent.name for path in fleet.repository.glob(f"*/{CONFIG_FILE}")]
    return {name: [ready_on(port, name) for port in fleet.triton_ports] for name in sorted(models)
            if read_serving_version(fleet.repository / name) is not None}


def converged(fleet: Fleet) -> bool:
    """Every Triton has exactly the published version of every published model loaded (and nothing else)."""
    try:
        state = loaded(fleet)
    except (httpx.HTTPError, ValueError):
        return False
    return all(versions == [[read_serving_version(fleet.repository / name)]] * len(fleet.triton_ports)
               for name, versions in state.items())


def admin(fleet: Fleet) -> httpx.Client:
    return httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=600)


def model_status(fleet: Fleet, name: str = NAME) -> dict:
    with admin(fleet) as client:
        return client.get(f"/v1/admin/models/{name}").json()


def restart_control_plane(fleet: Fleet) -> float:
    """Start the control plane again; when it started (monotonic)."""
    started = time.monotonic()
    fleet.start("control-plane")
    fleet.wait_http("control-plane", f"{fleet.control_url}/healthz")
    return started


def every_gateway_serves(fleet: Fleet, version: str, model: str | None = None) -> bool:
    for url in fleet.gateway_urls:
        with httpx.Client(base_url=url, timeout=30) as client:
            response = classify(client, model)
        if response.status_code != 200 or response.json()["model_version"] != version:
            return False
    return True


@pytest.mark.parametrize("step", SWITCH_STEPS)
def test_a_control_plane_killed_at_a_step_of_a_deploy_converges_when_restarted(fleet: Fleet, step: str) -> None:
    pause = fleet.work / "pause"
    before_status = model_status(fleet)
    before = before_status["serving_version"]
    target = "2" if before == "1" else "1"
    switched = step != "loading"  # the kill comes after the publish
    outcome: list[object] = []

    def deploy() -> None:
        try:
            with admin(fleet) as client:
                outcome.append(client.post(f"/v1/admin/models/{NAME}/deploy", json={"version": int(target)}))
        except httpx.HTTPError as error:  # the control plane is killed under it
            outcome.append(error)

    (pause / step).touch()
    with traffic(fleet.gateway_urls):
        switching = threading.Thread(target=deploy, daemon=True)
        switching.start()
        wait_for((pause / f"{step}.reached").exists, f"the deploy at step {step!r}", STEP_TIMEOUT_S,
                 lambda: fleet.log_tail("control-plane"))
        if step == "published":  # a second switch while one runs: refused at once
            with admin(fleet) as client:
                for action, body in (("deploy", {"json": {"version": int(before)}}), ("rollback", {})):
                    started = time.monotonic()
                    refused = client.post(f"/v1/admin/models/{NAME}/{action}", **body)
                    assert refused.status_code == 409, refused.text
                    assert refused.json()["error"]["code"] == "switch_in_progress", refused.text
                    assert time.monotonic() - started < 2.0
        fleet.stop("control-plane", signal.SIGKILL)
        switching.join(60)
        assert outcome and not isinstance(outcome[0], httpx.Response), outcome  # it died mid-switch
        (pause / step).unlink()
        (pause / f"{step}.reached").unlink()
        serving = target if switched else before
        assert read_serving_version(fleet.repository / NAME) == serving
        started = restart_control_plane(fleet)
        wait_for(lambda: converged(fleet), f"convergence after a kill at {step!r}", CONVERGE_S,
                 lambda: f"{loaded(fleet)}\n{fleet.log_tail('control-plane')}")
        FIGURES[f"killed at {step}"] = time.monotonic() - started
        wait_for(lambda: every_gateway_serves(fleet, serving), f"both gateways on {serving}", CONVERGE_S)
    status = model_status(fleet)
    assert status["serving_version"] == serving and status["deployed"][-1:] in ([], [serving]), status
    history = status["history"]
    if switched:  # recorded, by the deploy or by the repair at start
        assert len(history) == len(before_status["history"]) + 1
        assert (history[-1]["action"], history[-1]["version"], history[-1]["previous"]) == ("deploy", target, before)
        assert status["deployed"][-1] == serving and status["rollback_target"] == before  # it served before
    else:  # never published: never recorded
        assert history == before_status["history"] and status["deployed"] == before_status["deployed"]


def test_a_rollback_after_the_faults_serves_the_version_that_served_before(fleet: Fleet) -> None:
    status = model_status(fleet)
    target = status["rollback_target"]
    assert target is not None and target != status["serving_version"], status
    with traffic(fleet.gateway_urls), admin(fleet) as client:
        response = client.post(f"/v1/admin/models/{NAME}/rollback")
        assert response.status_code == 200, response.text
        assert response.json()["changed"] is True and response.json()["version"] == target
        wait_for(lambda: every_gateway_serves(fleet, target), f"both gateways on {target}", CONVERGE_S)
    assert converged(fleet)


def test_a_triton_restarted_while_a_config_is_broken_serves_again_once_it_is_fixed(fleet: Fleet) -> None:
    """Triton 0 restarts while the classifier's config.pbtxt cannot be parsed: it starts without the model and
    gateway 0 is unready; once the file is fixed the control plane loads the model there, with no deploy."""
    config = fleet.repository / NAME / CONFIG_FILE
    good = config.read_text()
    published = read_serving_version(fleet.repository / NAME)
    gateway = fleet.gateway_urls[0]
    with traffic(fleet.gateway_urls[1:]):  # gateway 0's Triton goes down: only gateway 1 must not fail
        write_atomic(config, good + "\nthis is { not protobuf text\n")
        killed = fleet.tritonserver_pid(0)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: fleet.tritonserver_pid(0) not in (None, killed) and _answers(fleet.triton_ports[0]),
                 "Triton 0 restarted", 120, lambda: fleet.log_tail("triton-0"))
        assert ready_on(fleet.triton_ports[0], NAME) == []  # the broken config: not loaded at its start
        wait_for(lambda: _unready_naming(gateway, NAME), "gateway 0 unready naming the classifier", 30)
        write_atomic(config, good)
        fixed = time.monotonic()
        wait_for(lambda: _ready(gateway) and every_gateway_serves(fleet, published), "gateway 0 serving again",
                 CONVERGE_S, lambda: f"{loaded(fleet)}\n{fleet.log_tail('control-plane')}")
        FIGURES["config fixed -> served again"] = time.monotonic() - fixed
    assert converged(fleet)


def test_a_model_exported_after_the_tritons_started_is_loaded_and_served(fleet: Fleet) -> None:
    """Exported while the control plane is stopped (so that the gateways' 503 can be seen before anything loads it):
    both gateways name it as not loaded; the control plane, started, loads it on both Tritons."""
    name = "late_model"
    with traffic(fleet.gateway_urls):
        fleet.stop("control-plane")
        assert export_tiny(fleet.repository, fleet.work, CLASSES, seed=5, name=name) == 1
        for gateway in fleet.gateway_urls:
            wait_for(lambda: _unready_naming(gateway, name), f"{gateway} unready naming {name}", 30)
        started = restart_control_plane(fleet)
        wait_for(lambda: all(_ready(url) for url in fleet.gateway_urls) and every_gateway_serves(fleet, "1", name),
                 f"{name} served by both gateways", CONVERGE_S,
                 lambda: f"{loaded(fleet)}\n{fleet.log_tail('control-plane')}")
        FIGURES["new model -> served"] = time.monotonic() - started
    for gateway in fleet.gateway_urls:
        assert httpx.get(f"{gateway}/readyz", timeout=10).json()["models"] == {
            NAME: read_serving_version(fleet.repository / NAME), DEFAULT_RECONSTRUCTOR: "1", name: "1"}
    assert converged(fleet)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(gateway: str) -> bool:
    try:
        return httpx.get(f"{gateway}/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def _unready_naming(gateway: str, name: str) -> bool:
    try:
        response = httpx.get(f"{gateway}/readyz", timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 503 and f"{name!r}" in response.json()["error"]["message"]
