"""The fleet on one machine (conftest.py: two Tritons, two gateways, the control plane, a worker): deploys and
rollbacks under load switch both gateways with no failed request; a corrupt version and a killed Triton do not take
serving down; jobs outlive gateway restarts and survive a killed worker; image collections are shared by the
gateways and re-indexed once per deploy."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import httpx
import pytest

from contracts.model_repository import ONNX_FILE
from tests.lomar_serve.fleet.conftest import AUTH, NAME, Fleet, Load, served_version
from tests.lomar_serve.tiny_models import TINY_MODEL, TINY_OPTIONS
from tests.lomar_serve.photos import PHOTO_NAMES, photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
SWITCH_WITHIN_S = 5.0


def test_deploys_and_rollbacks_switch_every_gateway_with_no_failed_request(fleet: Fleet) -> None:
    assert [served_version(url) for url in fleet.gateway_urls] == ["1", "1"]
    loads = [Load(url) for url in fleet.gateway_urls]
    for load in loads:
        load.start()
    switch_times = []
    try:
        with httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=600) as admin:
            for _ in range(3):
                for action, target in (("deploy", "2"), ("rollback", "1")):
                    body = {"json": {"version": int(target)}} if action == "deploy" else {}
                    response = admin.post(f"/v1/admin/models/{NAME}/{action}", **body)
                    assert response.status_code == 200 and response.json()["version"] == target, response.text
                    done = time.monotonic()
                    while sorted({served_version(url) for url in fleet.gateway_urls}) != [target]:
                        assert time.monotonic() - done < SWITCH_WITHIN_S, f"gateways not on {target} in time"
                        time.sleep(0.05)
                    switch_times.append(time.monotonic() - done)
    finally:
        for load in loads:
            load.stop.set()
            load.join(60)
    for load in loads:
        failures = [answer for answer in load.answers if answer[0] != 200]
        assert not failures, f"{load.url}: {failures[:5]}"
        assert len(load.answers) > 30 and {version for _, version in load.answers} == {"1", "2"}
    assert max(switch_times) < SWITCH_WITHIN_S


def test_a_corrupt_version_and_a_killed_triton_do_not_take_serving_down(fleet: Fleet) -> None:
    """A broken version on disk (as a failed job or a half-copied folder leaves it), then Triton SIGKILLed: its
    supervisor restarts it, it loads the published version only, and the gateway is ready within 30 s."""
    broken = fleet.repository / NAME / "7"
    shutil.copytree(fleet.repository / NAME / "2", broken)
    (broken / ONNX_FILE).write_bytes(b"\x00 not an onnx graph")
    before = fleet.tritonserver_pid(0)
    assert before is not None
    started = time.monotonic()
    os.kill(before, signal.SIGKILL)
    gateway = fleet.gateway_urls[0]
    while True:
        elapsed = time.monotonic() - started
        try:
            ready = httpx.get(f"{gateway}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and fleet.tritonserver_pid(0) not in (None, before):
            break
        assert elapsed < 30, f"not ready 30 s after the kill:\n{fleet.log_tail('triton-0')}"
        time.sleep(0.25)
    assert served_version(gateway) == served_version(fleet.gateway_urls[1])
    shutil.rmtree(broken)


def test_jobs_outlive_a_gateway_restart_and_a_killed_worker(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=60) as admin:
        job = admin.post("/v1/admin/jobs", json={"data_dir": "set", "epochs": 3, "options": TINY_OPTIONS,
                                                 **TINY_MODEL}).json()
        assert "id" in job, job

        def record() -> dict:
            return admin.get(f"/v1/admin/jobs/{job['id']}").json()

        def wait_for(predicate, what: str, timeout_s: float = 300) -> dict:  # noqa: ANN001
            deadline = time.monotonic() + timeout_s
            while not predicate(current := record()):
                assert time.monotonic() < deadline, f"{what}: {current}"
                time.sleep(0.5)
            return current

        wait_for(lambda r: r["state"] == "running" and r["metrics"].get("training", {}).get("step"), "never trained")
        fleet.stop("gateway-0")  # the data plane restarts: the job does not notice
        fleet.start("gateway-0")
        fleet.wait_http("gateway-0", f"{fleet.gateway_urls[0]}/readyz")
        assert record()["state"] == "running"

        wait_for(lambda r: (fleet.work / "jobs" / job["id"] / "train" / "checkpoint-last.pth").is_file(),
                 "no checkpoint")
        fleet.stop("worker", signal.SIGKILL)  # no chance to say goodbye: the heartbeat stops
        interrupted = wait_for(lambda r: r["state"] == "interrupted", "never interrupted", timeout_s=120)
        assert "resume" in interrupted["message"]
        assert admin.post(f"/v1/admin/jobs/{job['id']}/resume").json()["state"] == "queued"
        fleet.start("worker")
        done = wait_for(lambda r: r["state"] in ("succeeded", "failed"), "never finished", timeout_s=600)
        assert done["state"] == "succeeded", done
        version = done["model_version"]
        status = admin.get(f"/v1/admin/models/{NAME}").json()
        assert version in status["versions"]


def test_collections_are_shared_by_the_gateways_and_reindexed_once_per_deploy(fleet: Fleet) -> None:
    """Created through one gateway, filled through both, searched through either; a deploy re-indexes it on one
    gateway (the store's lease) while searches through both keep answering, then both answer with the new
    version."""
    first, second = (httpx.Client(base_url=url, timeout=120) for url in fleet.gateway_urls)
    photos = {name: photo_bytes(name) for name in PHOTO_NAMES}

    def add(client: httpx.Client, names: list[str]) -> None:
        files = [("image", (f"{name}.jpg", photos[name], "image/jpeg")) for name in names]
        response = client.post("/v1/collections/shared/images", files=files, params={"id": names})
        assert response.status_code == 201, response.text

    def top_hits(client: httpx.Client) -> tuple[str, list[str]]:
        response = client.post("/v1/collections/shared/search", content=photos["rocket"],
                               headers={"content-type": "image/jpeg"}, params={"top_k": 3})
        assert response.status_code == 200, response.text
        return response.json()["model_version"], [hit["id"] for hit in response.json()["results"]]

    def described(client: httpx.Client) -> dict:
        return client.get("/v1/collections/shared").json()

    try:
        assert first.post("/v1/collections", json={"name": "shared", "model": NAME}).status_code == 201
        assert second.post("/v1/collections", json={"name": "shared"}).status_code == 409  # it exists there too
        names = list(photos)
        for start in range(0, len(names), 6):  # both gateways add
            add((first, second)[start // 6 % 2], names[start:start + 6])
        assert described(first)["count"] == described(second)["count"] == len(names)
        assert top_hits(first) == top_hits(second) and top_hits(first)[1][0] == "rocket"
        version = top_hits(first)[0]
        target = "2" if version == "1" else "1"

        answers: list[tuple[str, list[str]]] = []
        stop = threading.Event()

        def search_both() -> None:
            while not stop.is_set():
                for client in (first, second):
                    try:
                        answers.append(top_hits(client))
                    except (AssertionError, httpx.HTTPError) as error:  # a failed search: reported below
                        answers.append(("failed", [repr(error)]))
        searcher = threading.Thread(target=search_both, daemon=True)
        searcher.start()
        with httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=600) as admin:
            response = admin.post(f"/v1/admin/models/{NAME}/deploy", json={"version": int(target)})
            assert response.status_code == 200, response.text
        deadline = time.monotonic() + 180
        while {described(c)["model_version"] for c in (first, second)} != {target}:
            assert time.monotonic() < deadline, f"not re-indexed: {described(first)}, {described(second)}"
            time.sleep(0.5)
        stop.set()
        searcher.join(120)
        assert not searcher.is_alive()
        assert {answer[0] for answer in answers} <= {version, target}, [a for a in answers if a[0] == "failed"][:3]
        assert len(answers) > 10 and answers[-1][0] == target
        assert all(hits[0] == "rocket" for _, hits in answers)  # each answer from one version's index
        assert described(second)["indexed"] == len(names) and described(second)["reindexing_to"] is None
        logs = fleet.log_tail("gateway-0", 10**7) + fleet.log_tail("gateway-1", 10**7)
        assert logs.count("collection shared: re-indexed") == 1, "re-indexed on more than one gateway"
        assert second.delete("/v1/collections/shared").status_code == 200
        assert first.get("/v1/collections/shared").status_code == 404  # deleted through the other gateway
    finally:
        first.close()
        second.close()
