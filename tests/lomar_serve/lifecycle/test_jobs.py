"""The job runner with real training, export and verification subprocesses on a tiny synthetic set (e2e: it
starts training processes)."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.checkpoints import BEST_CHECKPOINT, file_sha256
from contracts.model_card import ModelCard
from contracts.model_repository import DEFAULT_CLASSIFIER
from lomar_serve.lifecycle.jobs import JobRunner, JobSettings
from lomar_serve.lifecycle.paths import DataRoots
from lomar_serve.lifecycle.spec import JobRequest
from lomar_serve.lifecycle.store import JobRecord, LifecycleStore
from tests.lomar_serve.lifecycle.conftest import TINY_MODEL, TINY_OPTIONS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def wait_for(runner: JobRunner, job_id: str, done, timeout_s: float = 240.0) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = runner.get(job_id)
        if done(record):
            return record
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not get there in time: {runner.describe(job_id)}")


def finished(record: JobRecord) -> bool:
    return record.state not in ("queued", "running")


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path


def make_runner(workspace: Path, **kwargs) -> JobRunner:
    store = LifecycleStore(workspace / "jobs" / "lifecycle.sqlite")
    settings = JobSettings(jobs_dir=workspace / "jobs", model_repository=workspace / "repo", poll_interval_s=0.2,
                           terminate_grace_s=5.0)
    return JobRunner(store, settings, **kwargs)


@pytest.fixture()
def deployed() -> list[tuple[str, str]]:
    return []


@pytest.fixture()
def runner(workspace: Path, deployed: list[tuple[str, str]]) -> Iterator[JobRunner]:
    """A runner whose auto-deploy records its calls (the deployer itself is tested against Triton)."""
    runner = make_runner(workspace, deploy=lambda name, version: deployed.append((name, version)) or {})
    runner.start()
    yield runner
    runner.stop()


def request(data: str, epochs: int = 1, **options) -> JobRequest:
    return JobRequest(data_dir=data, epochs=epochs, options={**TINY_OPTIONS, **options}, **TINY_MODEL)


def test_job_trains_exports_verifies_and_deploys(runner: JobRunner, data_root: Path, workspace: Path,
                                                 deployed: list[tuple[str, str]]) -> None:
    plan = request("base").model_copy(update={"auto_deploy": True}).plan(DataRoots.of([data_root]),
                                                                         runner.settings.jobs_dir)
    job = runner.submit(plan)
    record = wait_for(runner, job.id, finished)
    assert record.state == "succeeded", runner.describe(job.id)["log_tail"]
    assert (record.stage, record.progress, record.model_version) == ("done", 1.0, "1")
    card = ModelCard.read(workspace / "repo" / DEFAULT_CLASSIFIER / "1")
    assert card.classes == ("class_000_circle", "class_001_square", "class_002_triangle")
    assert card.source_checkpoint == BEST_CHECKPOINT
    assert card.source_sha256 == file_sha256(Path(record.output_dir, BEST_CHECKPOINT))
    assert record.metrics["training"]["epochs_done"] == 1 and "val_top1" in record.metrics["training"]
    verification = record.metrics["verification"]
    assert verification["metric"] == "top1" and verification["count"] == 12 and verification["baseline"] is None
    assert 0.0 <= verification["value"] <= 100.0 and verification["not_worse"]
    assert deployed == [("lomar_classifier", "1")] and record.metrics["deploy"]["deployed"] is True
    log = runner.describe(job.id)["log_tail"]
    assert "== stage verify ==" in log and "exported lomar_classifier version 1" in log


def test_cancel_terminates_the_running_stage(runner: JobRunner, data_root: Path) -> None:
    job = runner.submit(request("base", epochs=500).plan(DataRoots.of([data_root]), runner.settings.jobs_dir))
    wait_for(runner, job.id, lambda r: r.state == "running" and r.metrics.get("training", {}).get("step"))
    pid = runner.running_pid
    assert pid is not None
    record = runner.cancel(job.id)
    assert record.state == "cancelled"
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole group is gone
    assert "stage train" in runner.describe(job.id)["log_tail"]
    with pytest.raises(Exception, match="cancelled"):
        runner.cancel(job.id)


def test_interrupted_job_survives_and_resumes_from_its_checkpoint(workspace: Path, data_root: Path) -> None:
    first = make_runner(workspace)
    first.start()
    plan = request("base", epochs=4, save_every_steps=1).plan(DataRoots.of([data_root]), first.settings.jobs_dir)
    job = first.submit(plan)
    checkpoint = Path(job.output_dir) / "checkpoint-last.pth"
    wait_for(first, job.id, lambda r: checkpoint.is_file() and r.metrics.get("training", {}).get("step"))
    # the gateway dies: its record says running, its process is gone
    pid = first.running_pid
    assert pid is not None
    os.killpg(pid, 9)
    first.stop()
    first.store.transition(job.id, ("interrupted", "failed", "running"), "running")

    second = make_runner(workspace)
    assert second.start() == [job.id]
    try:
        record = second.get(job.id)
        assert record.state == "interrupted" and "resume" in record.message
        assert Path(record.log_path).is_file() and checkpoint.is_file()
        second.resume(job.id)
        record = wait_for(second, job.id, finished)
        assert record.state == "succeeded", second.describe(job.id)["log_tail"]
        assert "resumed from" in Path(record.log_path).read_text()
        assert record.metrics["training"]["epochs_done"] >= 4 and record.model_version == "1"
    finally:
        second.stop()
