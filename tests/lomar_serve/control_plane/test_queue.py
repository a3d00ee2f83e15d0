"""The job queue with an in-process Worker running real training, export and verification subprocesses on a tiny
synthetic set (e2e: it starts training processes); the whole job once on each store (SQLite, PostgreSQL)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.checkpoints import BEST_CHECKPOINT, LAST_CHECKPOINT, file_sha256
from contracts.model_card import ModelCard
from contracts.model_repository import DEFAULT_CLASSIFIER
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobRequest
from lomar_serve.jobs.store import JobRecord, LifecycleStore, open_store
from lomar_serve.worker.runner import AUTO_DEPLOY_UNAVAILABLE, JobSettings, Worker
from tests.lomar_serve.conftest import new_store_url
from tests.lomar_serve.control_plane.conftest import wait_for_job
from tests.lomar_serve.processes import group_gone
from tests.lomar_serve.tiny_models import TINY_MODEL, TINY_OPTIONS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def finished(record: JobRecord) -> bool:
    return record.state not in ("queued", "running")


def training(record: JobRecord) -> bool:
    return record.state == "running" and bool(record.metrics.get("training", {}).get("step"))


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path


@pytest.fixture()
def store(request: pytest.FixtureRequest, workspace: Path) -> LifecycleStore:
    """JOBS_DIR/lifecycle.sqlite; a test parametrised with store="postgresql" (indirect) gets a PostgreSQL one."""
    return open_store(new_store_url(request, getattr(request, "param", "sqlite"), workspace / "jobs"))


@pytest.fixture()
def queue(store: LifecycleStore, workspace: Path) -> Iterator[JobQueue]:
    queue = JobQueue(store, QueueSettings(jobs_dir=workspace / "jobs", heartbeat_timeout_s=15.0,
                                          sweep_interval_s=0.5, cancel_wait_s=20.0))
    queue.start()
    yield queue
    queue.stop()


def make_worker(store: LifecycleStore, workspace: Path, worker_id: str, **hooks) -> Worker:
    settings = JobSettings(jobs_dir=workspace / "jobs", model_repository=workspace / "repo", poll_interval_s=0.2,
                           terminate_grace_s=5.0, heartbeat_interval_s=0.5, claim_interval_s=0.2)
    return Worker(store, settings, worker_id, **hooks)


@pytest.fixture()
def deployed() -> list[tuple[str, str]]:
    return []


@pytest.fixture()
def worker(store: LifecycleStore, workspace: Path, deployed: list[tuple[str, str]]) -> Iterator[Worker]:
    """A worker whose auto-deploy records its calls (the deployer itself is tested against Triton)."""
    worker = make_worker(store, workspace, "w1", deploy=lambda name, version: deployed.append((name, version)) or {})
    worker.start()
    yield worker
    worker.stop()


def plan(data_root: Path, jobs_dir: Path, data: str = "base", epochs: int = 1, auto_deploy: bool = False,
         **options):
    request = JobRequest(data_dir=data, epochs=epochs, options={**TINY_OPTIONS, **options}, auto_deploy=auto_deploy,
                         **TINY_MODEL)
    return request.plan(DataRoots.of([data_root]), jobs_dir)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_job_trains_exports_verifies_and_deploys(queue: JobQueue, worker: Worker, data_root: Path, workspace: Path,
                                                 deployed: list[tuple[str, str]]) -> None:
    job = queue.submit(plan(data_root, queue.settings.jobs_dir, auto_deploy=True))
    assert job.state == "queued"
    record = wait_for_job(queue, job.id, finished)
    assert record.state == "succeeded", queue.describe(job.id)["log_tail"]
    assert (record.stage, record.progress, record.model_version, record.worker) == ("done", 1.0, "1", "w1")
    card = ModelCard.read(workspace / "repo" / DEFAULT_CLASSIFIER / "1")
    assert card.classes == ("class_000_circle", "class_001_square", "class_002_triangle")
    assert card.source_checkpoint == BEST_CHECKPOINT
    assert card.source_sha256 == file_sha256(Path(record.output_dir, BEST_CHECKPOINT))
    assert record.metrics["training"]["epochs_done"] == 1 and "val_top1" in record.metrics["training"]
    training = record.metrics["training"]  # by steps, with the pace: the training's ETA (0 at its end)
    assert training["step"] == training["total_steps"] >= 1 and training["eta_s"] == 0.0 and training["img_per_s"] > 0
    verification = record.metrics["verification"]
    assert verification["metric"] == "top1" and verification["count"] == 12 and verification["baseline"] is None
    assert 0.0 <= verification["value"] <= 100.0 and verification["not_worse"]
    report = queue.evaluation(job.id)  # the verification stage's evaluation report, what GET .../report serves
    assert (report.candidate.version, report.candidate.count, report.baseline) == ("1", 12, None)
    assert report.candidate.value == verification["value"] and report.data_dir == "base/val"
    assert deployed == [("lomar_classifier", "1")] and record.metrics["deploy"]["deployed"] is True
    log = queue.describe(job.id)["log_tail"]
    assert "== stage verify ==" in log and "exported lomar_classifier version 1" in log and "== worker w1 ==" in log


def test_cancel_reaches_the_worker_through_the_store_and_a_cancelled_job_resumes(queue: JobQueue, worker: Worker,
                                                                                 data_root: Path) -> None:
    job = queue.submit(plan(data_root, queue.settings.jobs_dir, epochs=500, save_every_steps=1))
    checkpoint = Path(job.output_dir) / LAST_CHECKPOINT
    wait_for_job(queue, job.id, lambda r: training(r) and checkpoint.is_file())
    pid = worker.running_pid
    assert pid is not None
    record = queue.cancel(job.id)  # sets cancel_requested; the worker's next heartbeat ends the stage
    assert (record.state, record.cancel_requested) == ("cancelled", True)
    assert record.message.startswith("cancelled while running; ") and f"lomar jobs resume {job.id}" in record.message
    deadline = time.monotonic() + 10
    while not group_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_gone(pid), "the training process group outlived the cancel"
    assert "== stage train ==" in Path(record.log_path).read_text()  # the whole log: its tail is the training's
    with pytest.raises(Exception, match="cancelled"):
        queue.cancel(job.id)
    # the worker is free again, and the cancelled job resumes where it stopped: training from its checkpoint
    assert queue.resume(job.id).state == "queued"
    wait_for_job(queue, job.id, lambda r: "resumed from" in queue.describe(job.id)["log_tail"])
    assert queue.cancel(job.id).state == "cancelled"


def test_a_job_given_up_by_the_sweeper_is_stopped_by_its_worker(queue: JobQueue, worker: Worker, store: LifecycleStore,
                                                                data_root: Path) -> None:
    """A worker cut off from the store for longer than the timeout: its job was interrupted meanwhile (and may be
    resumed elsewhere), so at its next heartbeat the worker ends the stage and leaves the record alone."""
    job = queue.submit(plan(data_root, queue.settings.jobs_dir, epochs=500))
    wait_for_job(queue, job.id, training)
    pid = worker.running_pid
    assert pid is not None
    assert store.interrupt_stale(-1.0, "given up: {id}") == [job.id]  # as if its heartbeats had stopped arriving
    deadline = time.monotonic() + 15
    while not (group_gone(pid) and worker.current_job is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_gone(pid) and worker.current_job is None
    record = queue.get(job.id)
    assert (record.state, record.message) == ("interrupted", f"given up: {job.id}")
    assert "given up as interrupted" in queue.describe(job.id)["log_tail"]


def test_a_stopped_worker_leaves_the_job_interrupted_and_another_resumes_it(queue: JobQueue, store: LifecycleStore,
                                                                            workspace: Path, data_root: Path) -> None:
    first = make_worker(store, workspace, "first")
    first.start()
    job = queue.submit(plan(data_root, queue.settings.jobs_dir, epochs=4, auto_deploy=True, save_every_steps=1))
    checkpoint = Path(job.output_dir) / LAST_CHECKPOINT
    wait_for_job(queue, job.id, lambda r: checkpoint.is_file() and training(r))
    first.stop()  # what SIGTERM to `lomar worker` does
    record = queue.get(job.id)
    assert record.state == "interrupted" and "worker first running this job was stopped" in record.message
    assert f"jobs/{job.id}/resume" in record.message and checkpoint.is_file()

    queue.resume(job.id)
    second = make_worker(store, workspace, "second")  # no control plane: auto-deploy is not available
    second.start()
    try:
        record = wait_for_job(queue, job.id, finished)
        assert record.state == "succeeded", queue.describe(job.id)["log_tail"]
        assert "resumed from" in Path(record.log_path).read_text()
        assert record.metrics["training"]["epochs_done"] >= 4 and record.model_version == "1"
        assert record.worker == "second"
        assert record.metrics["deploy"] == {"deployed": False, "message": AUTO_DEPLOY_UNAVAILABLE}
    finally:
        second.stop()
