"""The admin routes: token checks before anything else, confined paths, validated names, job requests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lomar_serve.control_plane.service import Lifecycle
from tests.lomar_serve.control_plane.conftest import AUTH, JOB, TOKEN, admin_app


def make_client(tmp_path: Path, token: str = TOKEN) -> tuple[TestClient, Lifecycle]:
    app, lifecycle = admin_app(tmp_path, token)
    return TestClient(app), lifecycle


def test_admin_disabled_without_a_lifecycle(tmp_path: Path) -> None:
    """A control plane never starts without a token (its settings require one); an app without a lifecycle
    refuses every admin request, saying why."""
    app, lifecycle = admin_app(tmp_path)
    app.state.lifecycle = None
    response = TestClient(app).post("/v1/admin/jobs", json=JOB, headers=AUTH)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"
    assert "LOMAR_ADMIN_TOKEN" in response.json()["error"]["message"]
    assert lifecycle.store.list_jobs() == []


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": "Basic " + TOKEN}, 401), ({"Authorization": "Bearer wrong"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
])
def test_missing_or_wrong_token_changes_nothing(tmp_path: Path, headers: dict, status: int) -> None:
    client, lifecycle = make_client(tmp_path, TOKEN)
    calls = [("POST", "/v1/admin/jobs", JOB), ("GET", "/v1/admin/jobs", None),
             ("POST", "/v1/admin/models/lomar_classifier/deploy", {"version": 1}),
             ("POST", "/v1/admin/models/lomar_classifier/rollback", None),
             ("POST", "/v1/admin/jobs/abc/cancel", None), ("POST", "/v1/admin/jobs/not-an-id/cancel", None),
             ("POST", "/v1/admin/jobs", {"data_dir": "../../etc"})]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert TOKEN not in response.text
    assert lifecycle.store.list_jobs() == [] and lifecycle.store.deployments() == {}


def test_paths_and_names_are_checked(tmp_path: Path) -> None:
    client, lifecycle = make_client(tmp_path, TOKEN)
    for data_dir in ("../outside", str(tmp_path / "outside"), "set/../../outside", "/etc"):
        response = client.post("/v1/admin/jobs", json={**JOB, "data_dir": data_dir}, headers=AUTH)
        assert response.status_code == 403 and response.json()["error"]["code"] == "path_not_allowed"
    response = client.post("/v1/admin/jobs", json={**JOB, "model_name": "../evil"}, headers=AUTH)
    assert response.status_code == 422
    response = client.post("/v1/admin/jobs", json={**JOB, "options": {"output_dir": "/tmp"}}, headers=AUTH)
    assert response.status_code == 400
    assert client.post("/v1/admin/models/-a/deploy", json={"version": 1}, headers=AUTH).status_code == 422
    assert client.post("/v1/admin/models/m/deploy", json={"version": 0}, headers=AUTH).status_code == 422
    assert client.post("/v1/admin/models/%2e%2e/rollback", headers=AUTH).status_code in (404, 422)
    assert client.get("/v1/admin/jobs/..%2f..", headers=AUTH).status_code in (404, 422)
    assert lifecycle.store.list_jobs() == []


@pytest.mark.parametrize("split", ["", "train", "val"])
def test_a_class_folder_symlinked_out_of_the_roots_is_refused_at_submission(tmp_path: Path, split: str) -> None:
    """An empty class folder leading out of the data roots: no image to refuse, but its name would be a label."""
    client, lifecycle = make_client(tmp_path, TOKEN)
    folder = tmp_path / "data" / "set"
    if split:
        (folder / "a").rename(tmp_path / "moved")
        for name in ("train", "val"):
            (folder / name / "a").mkdir(parents=True)
    (tmp_path / "outside" / "empty").mkdir()
    (folder / split / "b").symlink_to(tmp_path / "outside" / "empty", target_is_directory=True)
    pretrain = client.post("/v1/admin/jobs", json={**JOB, "kind": "pretrain"}, headers=AUTH)
    assert pretrain.status_code == 202, pretrain.text  # no labels: its images are checked as it lists them
    refused = client.post("/v1/admin/jobs", json=JOB, headers=AUTH)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "path_not_allowed", refused.text
    assert "class folder b under" in refused.text and str(tmp_path / "outside") not in refused.text
    assert [job.kind for job in lifecycle.store.list_jobs()] == ["pretrain"]


def test_a_log_offset_past_64_bits_is_a_422(tmp_path: Path) -> None:
    """Found by fuzzing: an offset no file offset can hold was a 500 (OverflowError from seek)."""
    client, _ = make_client(tmp_path, TOKEN)
    job = client.post("/v1/admin/jobs", json=JOB, headers=AUTH).json()
    Path(job["log_path"]).write_text("a line\n")
    for offset in (2**63, 10**40):
        refused = client.get(f"/v1/admin/jobs/{job['id']}/log", params={"offset": offset}, headers=AUTH)
        assert refused.status_code == 422 and "9223372036854775807" in refused.text, refused.text
    last = client.get(f"/v1/admin/jobs/{job['id']}/log", params={"offset": 2**63 - 1}, headers=AUTH)
    assert last.status_code == 200 and last.json()["text"] == "" and last.json()["offset"] == 2**63 - 1
    first = client.get(f"/v1/admin/jobs/{job['id']}/log", params={"offset": 2}, headers=AUTH).json()
    assert first["text"] == "line\n" and first["offset"] == 7


def test_jobs_and_models_routes(tmp_path: Path) -> None:
    client, lifecycle = make_client(tmp_path, TOKEN)
    response = client.post("/v1/admin/jobs", json=JOB, headers=AUTH)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued" and job["params"]["data_dir"] == str((tmp_path / "data" / "set").resolve())
    assert [j["id"] for j in client.get("/v1/admin/jobs", headers=AUTH).json()["jobs"]] == [job["id"]]
    shown = client.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH).json()
    assert shown["id"] == job["id"] and "log_tail" in shown
    assert client.get(f"/v1/admin/jobs/{job['id']}/log", headers=AUTH).json()["offset"] == 0
    assert client.post(f"/v1/admin/jobs/{job['id']}/cancel", headers=AUTH).json()["state"] == "cancelled"
    conflict = client.post(f"/v1/admin/jobs/{job['id']}/cancel", headers=AUTH)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "job_conflict"
    assert client.post(f"/v1/admin/jobs/{job['id']}/resume", headers=AUTH).json()["state"] == "queued"
    assert client.post(f"/v1/admin/jobs/{job['id']}/resume", headers=AUTH).status_code == 409  # queued already
    assert client.get("/v1/admin/jobs/abcdef", headers=AUTH).status_code == 404
    missing = client.post("/v1/admin/models/lomar_classifier/deploy", json={"version": 3}, headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
    nothing = client.post("/v1/admin/models/lomar_classifier/rollback", headers=AUTH)
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_roll_back"
    status = client.get("/v1/admin/models/lomar_classifier", headers=AUTH).json()
    assert status["deployed"] == [] and status["versions"] == []
    assert client.get("/v1/admin/models", headers=AUTH).json() == {"models": []}  # an empty repository
    assert client.get("/v1/admin/models").status_code == 401


def test_metrics_come_in_increments_after_a_cursor_and_the_eta_with_the_job(tmp_path: Path) -> None:
    client, lifecycle = make_client(tmp_path, TOKEN)
    job = client.post("/v1/admin/jobs", json=JOB, headers=AUTH).json()
    empty = client.get(f"/v1/admin/jobs/{job['id']}/metrics", headers=AUTH).json()
    assert (empty["runs"], empty["train"], empty["next"], empty["eta_s"]) == ([], [], 0, None)
    output = Path(job["output_dir"])
    output.mkdir(parents=True)
    lines = [{"split": "run", "step": 0, "time": 1.0, "epoch": 0, "epochs": 2, "steps_per_epoch": 2, "total_steps": 4,
              "images": 16},
             {"split": "train", "step": 1, "time": 2.0, "epoch": 0, "loss": 1.4, "lr": 0.001, "img_per_s": 8.0,
              "memory_mb": 300.0},
             {"split": "train", "step": 2, "time": 3.0, "epoch": 0, "loss": "not a number"},  # left out
             {"split": "epoch", "step": 2, "time": 3.0, "epoch": 0, "loss": 1.3, "lr": 0.001, "skipped_images": 0,
              "steps": 2},
             {"split": "val", "step": 2, "time": 3.5, "epoch": 0, "loss": 1.2, "top1": 50.0, "top5": 100.0, "count": 8}]
    with open(output / "metrics.jsonl", "w") as log:
        log.write("".join(json.dumps(line) + "\n" for line in lines) + '{"split": "train", "st')  # being written
    first = client.get(f"/v1/admin/jobs/{job['id']}/metrics", params={"after": 0}, headers=AUTH).json()
    assert [r["total_steps"] for r in first["runs"]] == [4]
    assert [(r["step"], r["loss"], r["img_per_s"]) for r in first["train"]] == [(1, 1.4, 8.0)]
    assert [r["loss"] for r in first["epochs"]] == [1.3] and [r["top1"] for r in first["val"]] == [50.0]
    assert first["next"] == sum(len(json.dumps(line)) + 1 for line in lines)
    with open(output / "metrics.jsonl", "a") as log:  # the line being written is complete now
        log.write('ep": 3, "time": 4.0, "epoch": 1, "loss": 1.1, "lr": 0.0005, "img_per_s": 9.0}\n')
    second = client.get(f"/v1/admin/jobs/{job['id']}/metrics", params={"after": first["next"]}, headers=AUTH).json()
    assert [r["step"] for r in second["train"]] == [3] and second["runs"] == second["val"] == []
    again = client.get(f"/v1/admin/jobs/{job['id']}/metrics", params={"after": second["next"]}, headers=AUTH).json()
    assert again["train"] == [] and again["next"] == second["next"]
    assert client.get(f"/v1/admin/jobs/{job['id']}/metrics", params={"after": -1}, headers=AUTH).status_code == 422
    assert client.get(f"/v1/admin/jobs/{job['id']}/metrics").status_code == 401
    assert client.get("/v1/admin/jobs/abcdef/metrics", headers=AUTH).status_code == 404

    # the ETA its worker keeps with the training figures shows while the job trains, in the record and the list
    lifecycle.store.claim_next("w1")
    lifecycle.store.update_job(job["id"], stage="train", metrics={"training": {"eta_s": 42.5}})
    assert client.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH).json()["eta_s"] == 42.5
    assert client.get("/v1/admin/jobs", headers=AUTH).json()["jobs"][0]["eta_s"] == 42.5
    assert client.get(f"/v1/admin/jobs/{job['id']}/metrics", headers=AUTH).json()["eta_s"] == 42.5
    lifecycle.store.update_job(job["id"], stage="export")
    assert client.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH).json()["eta_s"] is None


def test_an_ingest_job_is_a_job_of_its_own_kind_with_its_own_checks(tmp_path: Path) -> None:
    client, lifecycle = make_client(tmp_path, TOKEN)
    body = {"kind": "ingest", "data_dir": "set", "collection": "photos", "create": True}
    response = client.post("/v1/admin/jobs", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["state"], job["model_name"]) == ("ingest", "queued", "")
    assert job["params"]["data_dir"] == str((tmp_path / "data" / "set").resolve())
    assert (job["params"]["collection"], job["params"]["create"], job["params"]["on_duplicate"]) == (
        "photos", True, "skip")
    refusals = [({**body, "collection": "Photos!"}, 422), ({**body, "epochs": 3}, 422),  # a training field
                ({**body, "on_duplicate": "merge"}, 422), ({**body, "model": "../evil"}, 422),
                ({key: value for key, value in body.items() if key != "collection"}, 422),
                ({**body, "data_dir": "../outside"}, 403), ({**body, "data_dir": "set/a/missing"}, 403),
                ({**body, "kind": "harvest"}, 422)]
    for request, status in refusals:
        response = client.post("/v1/admin/jobs", json=request, headers=AUTH)
        assert response.status_code == status, (request, response.text)
        assert response.json()["error"]["message"], response.text
    # a training request still needs no `kind` and is not taken for an ingest
    assert client.post("/v1/admin/jobs", json={**JOB, "collection": "photos"}, headers=AUTH).status_code == 422
    trained = client.post("/v1/admin/jobs", json=JOB, headers=AUTH)
    assert trained.status_code == 202 and trained.json()["kind"] == "finetune", trained.text
    assert [record.kind for record in lifecycle.store.list_jobs()] == ["finetune", "ingest"]
