"""End to end through a real one-box `lomar serve` (supervised Triton, gateway, and with the admin token the
control plane and a worker as child processes): retrain -> new version -> deploy -> answers from it -> roll back,
with a client sending requests throughout; auth and path checks; everything killed during a job and restarted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.lomar_serve.photos import photo_array
from tests.lomar_serve.processes import ServeStack, alive, children, command_line, wait_until
from tests.lomar_serve.tiny_models import (TINY_MODEL, TINY_OPTIONS, export_tiny, export_tiny_reconstruction,
                                           synthetic_set)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[3]
TOKEN = "e2e-admin-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GATEWAY_SECRET = "gateway-only-secret-5e1d"
NAME = "lomar_classifier"
BASE_CLASSES = ["class_000_circle", "class_001_square", "class_002_triangle"]


def lifecycle_env(data: Path, work: Path) -> dict[str, str]:
    return {"LOMAR_ADMIN_TOKEN": TOKEN, "LOMAR_DATA_ROOTS": str(data), "LOMAR_JOBS_DIR": str(work / "jobs"),
            "LOMAR_DEPLOY_DRAIN_S": "1", "LOMAR_RETRY_AFTER_S": "1", "LOMAR_JOB_HEARTBEAT_TIMEOUT_S": "5",
            "LOMAR_POLL_INTERVAL_S": "0.2",
            # the gateway's secret alone (its engine stays embedded): no other process may get it
            "LOMAR_SEARCH_PG_URL": f"postgresql://lomar:{GATEWAY_SECRET}@127.0.0.1:9/none"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data root: `novel` has the base classes with one of them renamed 'novel_class'."""
    root = tmp_path_factory.mktemp("lifecycle_data")
    synthetic_set(root / "novel", seed=5, rename={"class_002_triangle": "novel_class"})
    (root / "outside_link_target").mkdir()
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[ServeStack]:
    work = tmp_path_factory.mktemp("lifecycle_e2e")
    assert export_tiny(work / "repo", work, BASE_CLASSES, seed=1) == 1
    export_tiny_reconstruction(work / "repo", work)
    stack = ServeStack(work, lifecycle_env(data_dir, work))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def image(data_dir: Path) -> bytes:
    return next((data_dir / "novel" / "val" / "novel_class").iterdir()).read_bytes()


def classify(http: httpx.Client, body: bytes) -> tuple[str, set[str]]:
    response = http.post("/v1/classify", params={"top_k": 3}, content=body, headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["model_version"], {label["label"] for label in answer["results"][0]["labels"]}


def serving(http: httpx.Client) -> str:
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    return models[NAME]["serving_version"]


def lomar(stack: ServeStack, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {**stack.env, "LOMAR_CONTROL_PLANE_URL": stack.admin_url}
    env.pop("LOMAR_ADMIN_TOKEN")
    if token is not None:
        env["LOMAR_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "lomar_serve.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.partition("=")[::2] for entry in entries if entry)


def test_each_process_gets_only_the_settings_it_reads(stack: ServeStack) -> None:
    """`lomar serve` holds every role's settings; the control plane and the worker get their own (not the gateway's
    database URL), Triton and its Python stubs no LOMAR_* setting at all (no admin token)."""
    assert stack.served is not None
    tree, pending = {}, [stack.served.process.pid]
    while pending:
        pid = pending.pop()
        for child in children(pid):
            tree[child] = " ".join(command_line(child))
            pending.append(child)
    roles = {role: [pid for pid, line in tree.items() if marker in line]
             for role, marker in (("control plane", "lomar_serve.cli control-plane"),
                                  ("worker", "lomar_serve.cli worker"), ("triton", "tritonserver"),
                                  ("python stub", "triton_python_backend_stub"))}
    assert all(roles.values()), (roles, tree)
    for role in ("control plane", "worker"):
        for pid in roles[role]:
            env = environment(pid)
            assert env.get("LOMAR_ADMIN_TOKEN") == TOKEN and "LOMAR_SEARCH_PG_URL" not in env, role
            assert GATEWAY_SECRET not in str(env), role
    for role in ("triton", "python stub"):
        for pid in roles[role]:
            leaked = sorted(name for name in environment(pid) if name.startswith("LOMAR_"))
            assert leaked == [], (role, leaked)


def test_no_or_wrong_token_and_bad_paths_change_nothing(stack: ServeStack, data_dir: Path) -> None:
    with httpx.Client(base_url=stack.url, timeout=60) as gateway:
        assert gateway.get("/v1/admin/jobs", headers=AUTH).status_code == 404  # never on the public port
    with httpx.Client(base_url=stack.admin_url, timeout=60) as http:
        job = {"data_dir": "novel", "epochs": 1, **TINY_MODEL}
        for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 403)):
            assert http.post("/v1/admin/jobs", json=job, headers=headers).status_code == status
            assert http.post(f"/v1/admin/models/{NAME}/deploy", json={"version": 1},
                             headers=headers).status_code == status
            assert http.post(f"/v1/admin/models/{NAME}/rollback", headers=headers).status_code == status
            assert http.get("/v1/admin/jobs", headers=headers).status_code == status
        for bad in ("../lifecycle_e2e0", "/etc", "novel/../../", str(data_dir.parent)):
            response = http.post("/v1/admin/jobs", json={**job, "data_dir": bad}, headers=AUTH)
            assert response.status_code == 403 and response.json()["error"]["code"] == "path_not_allowed"
        assert http.post("/v1/admin/jobs", json={**job, "init": "/etc/passwd"}, headers=AUTH).status_code == 403
        assert http.post("/v1/admin/models/..%2F..%2Fetc/deploy", json={"version": 1},
                         headers=AUTH).status_code in (404, 422)
        assert http.get("/v1/admin/jobs", headers=AUTH).json()["jobs"] == []
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        assert serving(http) == "1"
    refused = lomar(stack, "deploy", NAME, "1", token="wrong")
    assert refused.returncode == 1 and "403" in refused.stderr and "wrong" not in refused.stderr
    assert TOKEN not in stack.served.log_tail(10**6)


def test_retrain_deploy_answers_rollback_without_failed_requests(stack: ServeStack, data_dir: Path) -> None:
    submitted = lomar(stack, "jobs", "submit", "--data-dir", "novel", "--epochs", "1", "--model", TINY_MODEL["model"],
                      "--model-option", "depth=2", *[f"--option={k}={v}" for k, v in TINY_OPTIONS.items()],
                      "--follow")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr
    lines = submitted.stdout.splitlines()  # --follow: a line per stage and epoch (the bar needs a terminal)
    assert any(": train  epoch 0/1" in line for line in lines) and any(line.endswith(": export") for line in lines)
    assert "succeeded: exported version 2 of lomar_classifier (top1" in lines[-1], lines
    png = image(data_dir)
    with httpx.Client(base_url=stack.url, timeout=120) as http, \
            httpx.Client(base_url=stack.admin_url, timeout=300) as admin:
        job = admin.get("/v1/admin/jobs", headers=AUTH).json()["jobs"][0]
        assert (job["state"], job["model_version"], job["progress"]) == ("succeeded", "2", 1.0)
        assert job["metrics"]["verification"]["baseline"]["version"] == "1"
        status = admin.get(f"/v1/admin/models/{NAME}", headers=AUTH).json()
        assert status["versions"] == ["1", "2"] and status["serving_version"] == "1"
        version, labels = classify(http, png)
        assert version == "1" and "novel_class" not in labels

        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=stack.url, timeout=60) as client:
                while not stop.is_set():
                    statuses.append(client.post("/v1/classify", params={"top_k": 3}, content=png,
                                                headers={"content-type": "image/png"}).status_code)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            deployed = lomar(stack, "deploy", NAME, "2")
            assert deployed.returncode == 0, deployed.stderr
            version, labels = classify(http, png)
            assert version == "2" and "novel_class" in labels  # a class only version 2 knows
            assert serving(http) == "2"
            rolled = lomar(stack, "rollback", NAME)
            assert rolled.returncode == 0, rolled.stderr
            assert classify(http, png)[0] == "1" and serving(http) == "1"
            for _ in range(2):
                assert admin.post(f"/v1/admin/models/{NAME}/deploy", json={"version": 2},
                                  headers=AUTH).json()["version"] == "2"
                assert admin.post(f"/v1/admin/models/{NAME}/rollback", headers=AUTH).json()["version"] == "1"
        finally:
            stop.set()
            worker.join(60)
        assert len(statuses) > 20 and set(statuses) == {200}, sorted(set(statuses))
        assert classify(http, png)[0] == "1"


def test_triton_restart_keeps_the_deployed_version(stack: ServeStack, data_dir: Path) -> None:
    """Triton dies and its supervisor restarts it: it loads the version config.pbtxt publishes (1, not the newer
    2); clients see 503 + Retry-After meanwhile, never a wrong answer or a 404."""
    png = image(data_dir)
    old_pid = stack.served.triton_pid()
    os.kill(old_pid, signal.SIGKILL)
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        while time.monotonic() < deadline:
            response = http.post("/v1/classify", params={"top_k": 3}, content=png,
                                 headers={"content-type": "image/png"})
            seen.append((response.status_code, response.json().get("model_version", "")))
            if seen[-3:] == [(200, "1")] * 3 and any(status == 503 for status, _ in seen):
                break
            time.sleep(0.1)
    assert seen[-3:] == [(200, "1")] * 3, seen[-10:]
    assert {status for status, _ in seen} == {200, 503}, "no request saw Triton down"
    assert {version for status, version in seen if status == 200} == {"1"}
    assert stack.served.triton_pid() not in (None, old_pid)


def test_everything_killed_during_a_job_keeps_the_record(stack: ServeStack) -> None:
    """`lomar serve` SIGKILLed: Triton, the control plane, the worker and training go with it; restarted, the job
    is `interrupted` (resumable) and the published version serves."""
    with httpx.Client(base_url=stack.admin_url, timeout=60) as admin:
        job = admin.post("/v1/admin/jobs", headers=AUTH, json={
            "data_dir": "novel", "epochs": 500, "options": TINY_OPTIONS, **TINY_MODEL}).json()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            record = admin.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH).json()
            if record["state"] == "running" and record["metrics"].get("training", {}).get("step"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"job never trained: {record}")
    left = stack.descendants()
    stack.served.process.send_signal(signal.SIGKILL)  # its children get SIGTERM from the kernel
    stack.served.process.wait(30)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in left if alive(pid)], "a child outlived `lomar serve`"

    stack.start()
    with httpx.Client(base_url=stack.admin_url, timeout=60) as admin, \
            httpx.Client(base_url=stack.url, timeout=60) as http:
        # the worker got SIGTERM from the kernel and marked it itself; else the restarted control plane's sweep
        # would (no heartbeat for 5 s)
        deadline = time.monotonic() + 30
        while (record := admin.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH).json())["state"] == "running":
            assert time.monotonic() < deadline, f"the job of the killed worker was never interrupted: {record}"
            time.sleep(0.5)
        assert record["state"] == "interrupted" and "resume" in record["message"], record
        log = admin.get(f"/v1/admin/jobs/{job['id']}/log", params={"offset": 0}, headers=AUTH).json()["text"]
        assert log.startswith("[") and "== stage train ==" in log and "training.runner" in record["log_tail"]
        assert serving(http) == "1" and classify(http, image_path_bytes(stack))[0] == "1"
        assert admin.post(f"/v1/admin/jobs/{job['id']}/cancel", headers=AUTH).json()["state"] == "cancelled"


def image_path_bytes(stack: ServeStack) -> bytes:
    return image(Path(stack.env["LOMAR_DATA_ROOTS"]))


def crops(folder: Path, count: int) -> list[str]:
    """`count` distinct 320x240 JPEGs (crops of a photograph at distinct offsets) in sub-folders; their names."""
    photo = Image.fromarray(photo_array("astronaut")).convert("RGB")
    names = []
    for index in range(count):
        left, top = 3 * (index % 40), 3 * (index // 40)
        name = f"roll-{index // 100}/frame-{index:04d}.jpg"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        photo.crop((left, top, left + 320, top + 240)).save(folder / name, "JPEG", quality=85)
        names.append(name)
    return names


def test_an_ingest_job_killed_with_its_worker_resumes_to_every_image_once(stack: ServeStack, data_dir: Path) -> None:
    """`lomar jobs ingest` through the control plane: the worker adds a folder through the gateway with a key of the
    job's own (collections:write is not open here); its worker SIGKILLed mid-way (`lomar serve` restarts it), the
    job is interrupted, resumed, and ends with every image exactly once, found by name; its keys are revoked."""
    names = crops(data_dir / "film", 480)
    submitted = lomar(stack, "jobs", "ingest", "film", "film", "--create")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[1]
    with httpx.Client(base_url=stack.admin_url, headers=AUTH, timeout=60) as admin, \
            httpx.Client(base_url=stack.url, timeout=60) as http:
        def ingesting() -> dict | None:
            record = admin.get(f"/v1/admin/jobs/{job_id}").json()
            assert record["state"] in ("queued", "running"), record
            return record if record["metrics"].get("ingest", {}).get("done") else None

        record = wait_until(ingesting, "the ingest job to add images", 120)
        assert record["metrics"]["ingest"]["done"] < len(names) and record["eta_s"] is not None, record
        workers = [pid for pid in stack.descendants() if "lomar_serve.cli worker" in " ".join(command_line(pid))]
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: admin.get(f"/v1/admin/jobs/{job_id}").json()["state"] == "interrupted",
                   "the sweeper to interrupt the job of the killed worker", 60)
        before = http.get("/v1/collections/film").json()["count"]
        assert 0 < before < len(names)
        assert admin.post(f"/v1/admin/jobs/{job_id}/resume").json()["state"] == "queued"
        record = wait_until(lambda: (r := admin.get(f"/v1/admin/jobs/{job_id}").json())["state"] not in (
            "queued", "running") and r, "the resumed job to end", 240)
        assert record["state"] == "succeeded", record
        figures = record["metrics"]["ingest"]
        assert (figures["files"], figures["failed"], figures["count"]) == (len(names), 0, len(names)), figures
        assert figures["skipped"] >= before and figures["added"] + figures["skipped"] == len(names)
        listed = http.get("/v1/collections/film/images", params={"limit": 1000}).json()["images"]
        assert sorted(image["name"] for image in listed) == sorted(names)  # every image exactly once
        keys = [key for key in admin.get("/v1/admin/keys").json()["keys"] if key["name"] == f"ingest-job-{job_id}"]
        assert len(keys) >= 2 and all(key["revoked_at"] for key in keys), keys  # the killed run's one too
        listing = lomar(stack, "jobs", "list")
        assert f"{job_id}  succeeded" in listing.stdout and "collection film" in listing.stdout, listing.stdout
