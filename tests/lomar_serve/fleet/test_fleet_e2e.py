"""The fleet on one machine (conftest.py: two Tritons, two gateways, the control plane, a worker): deploys and
rollbacks under load switch both gateways with no failed request; a corrupt version and a killed Triton do not take
serving down; jobs outlive gateway restarts and survive a killed worker; image collections are shared by the
gateways and re-indexed once per deploy; API keys created and revoked through the control plane reach both gateways,
and a hostile client flooding them without a key changes nothing and leaves every process within its budgets."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import httpx
import pytest

from contracts.model_repository import ONNX_FILE
from lomar_serve.common.api_keys import split_key
from lomar_serve.search.engine import DEFAULT_POOL_SIZE
from tests.lomar_serve.fleet.conftest import AUTH, NAME, Fleet, Load, served_version, traffic
from tests.lomar_serve.processes import alive
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
        assert not load.failures(), f"{load.url}: {load.failures()[:5]}"
        assert len(load.answers) > 30 and {answer.version for answer in load.answers} == {"1", "2"}
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
    key = create_key(fleet, "collections:read", "collections:write")
    first, second = (httpx.Client(base_url=url, timeout=120, headers=bearer(key)) for url in fleet.gateway_urls)
    wait_until_accepted(fleet, key)
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


def create_key(fleet: Fleet, *scopes: str, **quotas: int) -> str:
    with httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=60) as admin:
        response = admin.post("/v1/admin/keys", json={"name": "fleet-test", "scopes": list(scopes), **quotas})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_until_accepted(fleet: Fleet, key: str, accepted: bool = True, timeout_s: float = 10.0) -> None:
    """Until every gateway accepts `key` (or refuses it), as read from the file the control plane published."""
    deadline = time.monotonic() + timeout_s
    for url in fleet.gateway_urls:
        while (httpx.get(f"{url}/v1/collections", headers=bearer(key), timeout=30).status_code == 200) != accepted:
            assert time.monotonic() < deadline, f"{url} does not {'accept' if accepted else 'refuse'} the key"
            time.sleep(0.1)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def database_connections(postgres_url: str) -> int:
    import psycopg
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid()").fetchone()[0]


FLOOD = 10_000
FLOOD_THREADS = 8
FILES_BUDGET = 32  # descriptors a process may open beyond what it had before the flood (sockets in flight)


def test_a_hostile_client_without_a_key_changes_nothing_and_keys_follow_the_control_plane(fleet: Fleet) -> None:
    """10,000 anonymous creates through both gateways while both serve: every one refused, no request of the
    traffic fails, no collection appears, the open files of every process and the database connections stay within
    their budgets. A key with a quota of 3 collections creates 3 and is refused the 4th; revoked, it is refused by
    both gateways within seconds."""
    roles = [role for role in fleet.processes if alive(fleet.processes[role].pid)]
    files_before = {role: open_files(fleet.processes[role].pid) for role in roles}
    connections_budget = 2 * DEFAULT_POOL_SIZE  # one bounded pool per gateway (re-index leases add one each)
    refused: list[int] = []

    def flood(url: str, count: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for index in range(count):
                refused.append(client.post("/v1/collections", json={"name": f"spam{index}"}).status_code)

    with traffic(fleet.gateway_urls):
        threads = [threading.Thread(target=flood, args=(fleet.gateway_urls[index % 2], FLOOD // FLOOD_THREADS))
                   for index in range(FLOOD_THREADS)]
        for thread in threads:
            thread.start()
        peak_connections = 0
        while any(thread.is_alive() for thread in threads):
            peak_connections = max(peak_connections, database_connections(fleet.postgres_url))
            time.sleep(0.5)
    assert len(refused) == FLOOD and set(refused) == {401}, {status: refused.count(status) for status in set(refused)}
    assert peak_connections <= connections_budget, f"{peak_connections} database connections"
    for role in roles:
        grown = open_files(fleet.processes[role].pid) - files_before[role]
        assert grown <= FILES_BUDGET, f"{role}: {grown} more open files after the flood"

    key = create_key(fleet, "collections:read", "collections:write", max_collections=3)
    wait_until_accepted(fleet, key)
    with httpx.Client(base_url=fleet.gateway_urls[0], headers=bearer(key), timeout=120) as client:
        try:
            names = [f"quota{index}" for index in range(3)]
            assert [client.post("/v1/collections", json={"name": name}).status_code for name in names] == [201] * 3
            over = httpx.post(f"{fleet.gateway_urls[1]}/v1/collections", json={"name": "quota3"}, headers=bearer(key),
                              timeout=60)  # the other gateway counts the same owned collections (one database)
            assert over.status_code == 403 and over.json()["error"]["code"] == "quota_exceeded", over.text
            listed = {c["name"] for c in client.get("/v1/collections").json()["collections"]}
            assert not any(name.startswith("spam") for name in listed) and set(names) <= listed
        finally:
            for index in range(3):
                client.delete(f"/v1/collections/quota{index}")
    with httpx.Client(base_url=fleet.control_url, headers=AUTH, timeout=60) as admin:
        assert admin.delete(f"/v1/admin/keys/{key.split('_')[1]}").status_code == 200
    wait_until_accepted(fleet, key, accepted=False)
    logs = "".join(fleet.log_tail(role, 10**7) for role in fleet.processes)
    assert split_key(key)[1] not in logs  # type: ignore[index]  (no secret in any log line)
