"""Ingest jobs (lomar_serve/jobs/ingest.py, worker/ingest.py) run by a real Worker on a SQLite job store, adding a
folder to a collection of a live gateway over HTTP (the gateway tests' live server: a fake inference backend whose
embedding of an image is a projection of its mean colour; collections:write open, so no key is needed here). A
SIGKILLed worker, its job resumed, and the job's own API key through a real control plane: the lifecycle
end-to-end test (tests/lomar_serve/control_plane/test_lifecycle_e2e.py)."""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lomar_serve.clients.gateway import LomarClient
from lomar_serve.clients.ingest import IngestStopped
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.ingest import IngestPlan, IngestRequest
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.progress import job_eta
from lomar_serve.jobs.store import STORE_FILE, JobRecord, open_store
from lomar_serve.worker.ingest import NO_GATEWAY, GatewayAccess, run_ingest
from lomar_serve.worker.runner import JobSettings, Worker
from tests.lomar_serve.clients.test_ingest import COLOURS, colour_image
from tests.lomar_serve.gateway.api.conftest import live_server  # noqa: F401  (a fixture)
from tests.lomar_serve.processes import wait_until

FINAL = ("succeeded", "failed", "cancelled", "interrupted")


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    """A data root holding library/: COLOURS images in nested folders, a text file and a hidden image."""
    root = tmp_path / "data"
    for index in range(COLOURS):
        folder = root / "library" / ("2024/beach" if index % 2 else "2025")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{index:04d}.png").write_bytes(colour_image(index))
    (root / "library" / "notes.txt").write_text("not an image")
    (root / "library" / ".thumbs").mkdir()
    (root / "library" / ".thumbs" / "x.png").write_bytes(colour_image(99))
    return root


@pytest.fixture()
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(open_store(str(tmp_path / STORE_FILE)), QueueSettings(jobs_dir=tmp_path / "jobs"))


@pytest.fixture()
def worker_for(queue: JobQueue, tmp_path: Path) -> Iterator:
    """worker_for(gateway) -> a started Worker on the queue's store; stopped at the end."""
    started: list[Worker] = []

    def start(gateway: GatewayAccess | None) -> Worker:
        settings = JobSettings(jobs_dir=tmp_path / "jobs", model_repository=tmp_path / "repo", poll_interval_s=0.05,
                               heartbeat_interval_s=0.2, claim_interval_s=0.05)
        worker = Worker(queue.store, settings, f"w{len(started)}", gateway=gateway)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def finished(queue: JobQueue, job_id: str) -> JobRecord:
    return wait_until(lambda: (record := queue.get(job_id)).state in FINAL and record, f"job {job_id} to end",
                      context=lambda: json.dumps(queue.describe(job_id), indent=1))


def ingest_job(queue: JobQueue, data_root: Path, collection: str, **request: object) -> str:
    body = {"kind": "ingest", "data_dir": "library", "collection": collection, "create": True, **request}
    return queue.submit(IngestRequest.model_validate(body).plan(DataRoots.of([data_root]))).id


def test_a_worker_adds_a_folder_by_name_and_a_second_job_adds_nothing(live_server, queue: JobQueue,  # noqa: F811
                                                                       data_root: Path, worker_for) -> None:
    url = live_server[0]
    worker_for(GatewayAccess(url))
    collection = f"job-{secrets.token_hex(3)}"
    first = finished(queue, ingest_job(queue, data_root, collection))
    assert (first.state, first.stage, first.progress) == ("succeeded", "done", 1.0), first
    figures = first.metrics["ingest"]
    assert (figures["files"], figures["done"], figures["added"], figures["skipped"], figures["failed"]) == (
        COLOURS, COLOURS, COLOURS, 0, 0)
    assert figures["count"] == COLOURS and figures["img_per_s"] > 0 and figures["eta_s"] == 0
    assert first.message.startswith(f"added {COLOURS}, skipped 0 (already in), failed 0 of {COLOURS} images")
    report = json.loads(JobFiles(queue.settings.jobs_dir / first.id).ingest_report.read_text())
    assert (report["added"], report["failed"], report["count"]) == (COLOURS, [], COLOURS)
    assert "== stage ingest ==" in Path(first.log_path).read_text()
    with LomarClient(url) as client:
        hit = client.search(collection, colour_image(7), top_k=1)["results"][0]
        assert hit["name"] == "2024/beach/IMG_0007.png"  # its path in the folder
        names = {image["name"] for image in client.images(collection, limit=100)["images"]}
        assert len(names) == COLOURS and "2025/IMG_0000.png" in names and not any("thumbs" in n for n in names)

    again = finished(queue, ingest_job(queue, data_root, collection, create=False))
    assert again.state == "succeeded" and again.metrics["ingest"]["added"] == 0, again
    assert again.metrics["ingest"]["skipped"] == COLOURS and again.metrics["ingest"]["count"] == COLOURS


def test_a_job_stopped_midway_goes_on_where_it_stopped(live_server, data_root: Path, tmp_path: Path) -> None:  # noqa: F811
    """Stopped before its second request (what a cancel or a stopping worker does), run again: every image once."""
    url = live_server[0]
    collection = f"stop-{secrets.token_hex(3)}"
    plan = IngestPlan(data_dir=str(data_root / "library"), collection=collection, create=True,
                      data_roots=(str(data_root),))
    files = JobFiles(tmp_path / "job")
    files.job_dir.mkdir()
    seen: list[dict] = []
    asked: list[bool] = []
    with LomarClient(url) as client:
        with pytest.raises(IngestStopped):
            run_ingest(plan, client, files, on_figures=seen.append, stop=lambda: asked.append(True) or len(asked) > 1)
        assert 0 < seen[0]["done"] < COLOURS and seen[0]["eta_s"] is not None
        first = client.collection(collection)["count"]
        assert 0 < first < COLOURS
        figures = run_ingest(plan, client, files, on_figures=seen.append, stop=lambda: False)
        assert (figures["added"], figures["skipped"], figures["count"]) == (COLOURS - first, first, COLOURS)
        names = [image["name"] for image in client.images(collection, limit=100)["images"]]
        assert len(names) == len(set(names)) == COLOURS
    assert job_eta("running", "ingest", {"ingest": seen[0]}) == seen[0]["eta_s"]


def test_refusals_fail_the_job_saying_why(live_server, queue: JobQueue, data_root: Path, worker_for,  # noqa: F811
                                          tmp_path: Path) -> None:
    url = live_server[0]
    worker_for(GatewayAccess(url))
    missing = finished(queue, ingest_job(queue, data_root, f"none-{secrets.token_hex(3)}", create=False))
    assert missing.state == "failed" and "there is no collection" in missing.message, missing

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.png").write_bytes(colour_image(3))
    job_id = ingest_job(queue, data_root, f"out-{secrets.token_hex(3)}")  # planned before the link appears
    (data_root / "library" / "link.png").symlink_to(tmp_path / "elsewhere" / "secret.png")
    outside = finished(queue, job_id)
    assert outside.state == "failed" and "link.png" in outside.message and "outside" in outside.message, outside


def test_a_worker_without_a_gateway_fails_ingest_jobs_saying_how_to_give_one(queue: JobQueue, data_root: Path,
                                                                              worker_for) -> None:
    worker_for(None)
    record = finished(queue, ingest_job(queue, data_root, "photos"))
    assert (record.state, record.message) == ("failed", NO_GATEWAY)
