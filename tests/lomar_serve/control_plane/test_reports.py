"""Evaluation reports end to end without a server: the verification stage (lomar_serve.worker.scoring) scores two
exported tiny classifiers (the job's version and the serving one, which knows another class) on a synthetic
evaluation set and writes the report into a job's folder; the admin API serves it, the comparison and the
thumbnails, and nothing else from the folder."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from contracts.triton_config import read_serving_version
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.report import Evaluation
from lomar_serve.jobs.spec import JobPlan
from lomar_serve.worker import scoring
from tests.lomar_serve.control_plane.conftest import AUTH, admin_app
from tests.lomar_serve.tiny_models import export_tiny, synthetic_set

CLASSES = ["class_000_circle", "class_001_square", "class_002_triangle"]
SERVING_CLASSES = ["class_000_circle", "class_001_square", "novel_class"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NAME version 1 (serving: published by its export) knows another third class than version 2."""
    work = tmp_path_factory.mktemp("versions")
    assert export_tiny(work / "repo", work, SERVING_CLASSES, seed=1) == 1
    assert export_tiny(work / "repo", work, CLASSES, seed=2) == 2
    return work / "repo"


def test_the_verification_report_and_its_routes(tmp_path: Path, repository: Path) -> None:
    app, lifecycle = admin_app(tmp_path, model_repository=repository)
    client = TestClient(app)
    data = synthetic_set(tmp_path / "data" / "eval", classes=3, per_class=1, val_per_class=6)
    job = lifecycle.jobs.submit(JobPlan(kind="finetune", data_dir=str(data), model_name="lomar_classifier", epochs=1))
    missing = client.get(f"/v1/admin/jobs/{job.id}/report", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "report_not_found"
    assert "verification stage has not run" in missing.json()["error"]["message"]

    paths = JobFiles(lifecycle.jobs_dir / job.id)
    assert scoring.main(["--repository", str(repository), "--name", "lomar_classifier", "--version", "2",
                         "--baseline", "1", "--data-dir", str(data / "val"), "--out", str(paths.verification),
                         "--report-dir", str(paths.evaluation_dir), f"--data-roots={tmp_path / 'data'}"]) == 0
    summary = json.loads(paths.verification.read_text())
    evaluation = Evaluation.model_validate_json(paths.evaluation.read_text())
    assert evaluation.data_dir == "eval/val"

    report = client.get(f"/v1/admin/jobs/{job.id}/report", headers=AUTH).json()
    assert (report["job_id"], report["model"], report["version"], report["metric"]) == (job.id, "lomar_classifier",
                                                                                        "2", "top1")
    assert report["count"] == 18 and report["value"] == report["top1"] == summary["value"]
    assert report["top1"] <= report["top5"] == 100.0  # three labels: every right one is in the top five
    confusion = report["confusion"]
    assert confusion["labels"] == CLASSES and confusion["predicted_labels"] == CLASSES
    assert sum(map(sum, confusion["counts"])) == 18
    right = sum(confusion["counts"][i][i] for i in range(3))
    assert report["top1"] == pytest.approx(100 * right / 18) and report["mistake_count"] == 18 - right
    assert [c["label"] for c in report["classes"]] == CLASSES and all(c["support"] == 6 for c in report["classes"])
    confidences = [m["confidence"] for m in report["mistakes"]]
    assert confidences == sorted(confidences, reverse=True) and len(report["mistakes"]) == min(18 - right, 24)
    for mistake in report["mistakes"]:
        assert mistake["path"].startswith("eval/val/") and not Path(mistake["path"]).is_absolute()
        assert mistake["label"] != mistake["predicted"] and mistake["path"].split("/")[2] == mistake["label"]

    comparison = client.get(f"/v1/admin/jobs/{job.id}/compare", headers=AUTH).json()
    assert comparison["candidate"] == {k: v for k, v in report.items() if k not in ("job_id", "data_dir")}
    baseline = comparison["baseline"]
    assert baseline["version"] == "1" and baseline["count"] == 18 and summary["baseline"]["value"] == baseline["value"]
    assert baseline["confusion"]["predicted_labels"] == SERVING_CLASSES  # compared by name: a label it lacks
    scores = {c["label"]: c for c in baseline["classes"]}
    assert scores["class_002_triangle"]["recall"] == 0.0 and scores["novel_class"]["support"] == 0
    assert comparison["serving_version"] == read_serving_version(repository / "lomar_classifier") == "1"
    assert comparison["baseline_is_serving"] is True and comparison["not_worse"] == summary["not_worse"]
    for item in comparison["disagreements"]:
        assert item["candidate"] != item["baseline"]
    assert comparison["disagreement_count"] >= len(comparison["disagreements"])

    shown = [m["thumbnail"] for m in report["mistakes"] + baseline["mistakes"] + comparison["disagreements"]]
    assert shown and sorted(set(shown)) == sorted(p.name for p in paths.thumbnails.iterdir())
    response = client.get(f"/v1/admin/jobs/{job.id}/thumbnails/{shown[0]}", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(paths.thumbnails / shown[0]) as thumb:
        assert thumb.size == (96, 96)


def test_thumbnails_cannot_leave_the_job_folder(tmp_path: Path) -> None:
    app, lifecycle = admin_app(tmp_path)
    client = TestClient(app)
    job = lifecycle.jobs.submit(JobPlan(kind="finetune", data_dir="/d", model_name="m", epochs=1))
    paths = JobFiles(lifecycle.jobs_dir / job.id)
    paths.thumbnails.mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.jpg", paths.thumbnails / "00001.jpg")  # a thumbnail name leading out
    (paths.thumbnails / "00002.jpg").write_bytes(b"\xff\xd8 a jpeg")
    assert client.get(f"/v1/admin/jobs/{job.id}/thumbnails/00002.jpg", headers=AUTH).status_code == 200
    assert client.get(f"/v1/admin/jobs/{job.id}/thumbnails/00002.jpg").status_code == 401
    for name in ("00001.jpg", "00003.jpg"):
        response = client.get(f"/v1/admin/jobs/{job.id}/thumbnails/{name}", headers=AUTH)
        assert response.status_code == 404 and response.json()["error"]["code"] == "report_not_found"
    for name in ("..%2F..%2Fjob.log", "%2e%2e", "job.log", "00002.png", "..%2F" * 4 + "etc%2Fpasswd"):
        response = client.get(f"/v1/admin/jobs/{job.id}/thumbnails/{name}", headers=AUTH)
        assert response.status_code in (404, 422) and b"secret" not in response.content, name
    assert client.get("/v1/admin/jobs/abcdef/thumbnails/00002.jpg", headers=AUTH).status_code == 404
    (paths.evaluation_dir / "evaluation.json").write_text("{not json")
    broken = client.get(f"/v1/admin/jobs/{job.id}/compare", headers=AUTH)
    assert broken.status_code == 404 and "cannot be read" in broken.json()["error"]["message"]
