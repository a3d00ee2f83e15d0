"""A worker and a job store that goes away for a while, on a PostgreSQL of each test's own (stopped and started;
never a mock of the store): a store call rides out an outage shorter than its budget and gives up after it; a
progress write that fails for longer than the budget does not fail the job; a worker whose loop breaks records
why (the process test is test_store_outage_e2e.py).

No process is started besides PostgreSQL: the worker runs in this process, with an executor whose stages are
scripted by the test (the job's stages go through it exactly as through the local one)."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from contracts.checkpoints import LAST_CHECKPOINT, METRICS_FILE
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.errors import StoreUnavailable
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.spec import JobPlan
from lomar_serve.jobs.store import STORE_FILE, JobRecord, LifecycleStore, open_store
from lomar_serve.worker.executors import Execution, Executor, StageRun
from lomar_serve.worker.retrying_store import FIRST_WAIT_S, RetryingStore
from lomar_serve.worker.runner import JobSettings, Worker
from tests.lomar_serve.private_postgres import PrivatePostgres
from tests.lomar_serve.processes import wait_until

PLAN = JobPlan(kind="finetune", data_dir="/data/set", model_name="m", epochs=3, model="lomar_tiny_patch16")
BUDGET_S = 1.0  # the workers' store retry budget here: every outage below outlasts it


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.WARNING) -> list[str]:
    """The captured log messages of at least `level` that contain `text`."""
    return [r.getMessage() for r in caplog.records if r.levelno >= level and text in r.getMessage()]


class ScriptedStage(Execution):
    """A stage that runs until the test ends it (`finish`), counting the worker's polls."""

    def __init__(self, run: StageRun, finished: bool) -> None:
        self.run = run
        self.description = f"scripted {run.stage}"
        self.finish = threading.Event()
        if finished:
            self.finish.set()
        self.polls = 0

    def wait(self, timeout_s: float) -> int | None:
        self.polls += 1
        return 0 if self.finish.wait(timeout_s) else None

    def terminate(self, grace_s: float) -> None:
        self.finish.set()

    def train_step(self, step: int) -> None:
        """What training writes after a step: a metrics record (the worker's progress comes from it)."""
        train = self.run.workdir / "train"
        train.mkdir(exist_ok=True)
        with open(train / METRICS_FILE, "a", encoding="utf-8") as metrics:
            metrics.write(json.dumps({"split": "train", "step": step, "epoch": 0, "loss": 1.0, "lr": 0.001}) + "\n")


class ScriptedExecutor(Executor):
    """Training runs until the test finishes it (having written a checkpoint and a first step); verification
    writes its result and ends at once."""

    name = "scripted"

    def __init__(self) -> None:
        self.training: ScriptedStage | None = None

    def start(self, run: StageRun) -> ScriptedStage:
        paths = JobFiles(run.workdir)
        if run.stage == "training":
            paths.train.mkdir(exist_ok=True)
            (paths.train / LAST_CHECKPOINT).write_bytes(b"weights")
            self.training = ScriptedStage(run, finished=False)
            self.training.train_step(1)
            return self.training
        if run.stage == "verification":
            paths.verification.write_text(json.dumps({"metric": "top1", "value": 50.0, "not_worse": True}))
        return ScriptedStage(run, finished=True)


def queued_job(store: LifecycleStore, jobs_dir: Path) -> JobRecord:
    """A queued job whose export is done (as a resumed one's is): its stages are training and verification."""
    job = JobQueue(store, QueueSettings(jobs_dir=jobs_dir)).submit(PLAN)
    return store.update_job(job.id, model_version="1")


def test_a_store_call_rides_out_an_outage_within_its_budget_and_gives_up_after_it(
        private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="lomar_serve.worker")
    store = open_store(private_postgres.new_database())
    job = queued_job(store, tmp_path / "jobs")
    patient = RetryingStore(store, budget_s=60.0)
    private_postgres.stop()
    outcome: dict[str, Any] = {}
    call = threading.Thread(target=lambda: outcome.update(record=patient.update_job(job.id, message="written")))
    call.start()
    wait_until(lambda: messages(caplog, f"the record of job {job.id}: "), "the first failed try to be logged")
    assert call.is_alive(), f"the call ended during the outage: {outcome}"
    private_postgres.start()
    call.join(30)
    assert not call.is_alive(), "the call did not end once the store was back"
    assert outcome["record"].message == "written" and store.get_job(job.id).message == "written"
    assert messages(caplog, "the job store answers again after", logging.INFO)

    caplog.clear()
    private_postgres.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        RetryingStore(store, budget_s=BUDGET_S).update_job(job.id, message="lost")
    # tried again at least once, and given up before a pause would outlast the budget (tenacity's stop_before_delay)
    assert FIRST_WAIT_S <= time.monotonic() - started <= BUDGET_S + 5.0
    assert len(messages(caplog, f"the record of job {job.id}: ")) == 1  # several tries, one line


def test_progress_that_cannot_be_written_for_a_while_does_not_fail_the_job(
        private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="lomar_serve.worker")
    store = open_store(private_postgres.new_database())
    job = queued_job(store, tmp_path / "jobs")
    executor = ScriptedExecutor()
    worker = Worker(store, JobSettings(jobs_dir=tmp_path / "jobs", model_repository=tmp_path / "repo",
                                       poll_interval_s=0.1, heartbeat_interval_s=0.2, claim_interval_s=0.1,
                                       store_retry_s=BUDGET_S, executor=executor), "w1")
    worker.start()
    try:
        wait_until(lambda: store.get_job(job.id).metrics.get("training", {}).get("step") == 1,
                   "the first step's progress in the store")
        training = executor.training
        assert training is not None
        private_postgres.stop()
        stopped_at = time.monotonic()
        training.train_step(2)
        progress = f"progress of job {job.id}: "
        wait_until(lambda: messages(caplog, progress), "the failed progress write to be logged")
        polls = training.polls
        wait_until(lambda: training.polls >= polls + 20 and time.monotonic() - stopped_at > 3 * BUDGET_S,
                   "polls during an outage three times the retry budget")
        assert len(messages(caplog, progress)) == 1, "a failed progress write is logged once per outage"
        assert (worker.failure, worker.current_job, training.finish.is_set()) == (None, job.id, False)

        private_postgres.start()
        wait_until(lambda: store.get_job(job.id).metrics["training"]["step"] == 2, "the next poll to write again")
        wait_until(lambda: messages(caplog, f"progress of job {job.id}: the job store answers again", logging.INFO),
                   "the recovery to be logged (after the write the test has already seen)")
        training.finish.set()
        record = wait_until(lambda: (r := store.get_job(job.id)).state != "running" and r, "the job's end")
        assert (record.state, record.stage, record.progress) == ("succeeded", "done", 1.0), record
        assert record.metrics["verification"]["value"] == 50.0 and worker.failure is None
    finally:
        worker.stop()


def test_a_loop_that_breaks_is_logged_and_becomes_the_workers_failure(caplog: pytest.LogCaptureFixture,
                                                                      tmp_path: Path) -> None:
    """The store's table is gone (not an outage: a claim cannot succeed however often it is tried): the job loop
    ends with a traceback in the log, and `failure` says why (`lomar worker` exits on it)."""
    caplog.set_level(logging.INFO, logger="lomar_serve.worker")
    store = open_store(tmp_path / "jobs" / STORE_FILE)
    worker = Worker(store, JobSettings(jobs_dir=tmp_path / "jobs", model_repository=tmp_path / "repo",
                                       claim_interval_s=0.1, store_retry_s=BUDGET_S), "w1")
    worker.start()
    try:
        with sqlite3.connect(tmp_path / "jobs" / STORE_FILE) as db:
            db.execute("DROP TABLE jobs")
        failure = wait_until(lambda: worker.failure, "the worker's failure")
        assert isinstance(failure, sqlite3.OperationalError) and "no such table" in str(failure)
        crashed = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(crashed) == 1 and crashed[0].exc_info is not None
        assert "worker w1 cannot go on: its job loop stopped" in crashed[0].getMessage()
    finally:
        worker.stop()
