"""`lomar worker` as a real process on a PostgreSQL store of the test's own, which the test stops and starts: a
30 s outage in the middle of training (paused meanwhile, so that it is still running afterwards) does not hurt the
job; a worker that cannot record a job's end, or whose loop breaks, exits with status 3 (to be restarted) instead
of living on without working.

The control plane is the JobQueue in the test process (the object the admin API uses); where the job must
survive, its sweeper runs at the default heartbeat timeout (15 s, shorter than the outage) and the worker has its
default retry budget (the same 15 s)."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobRequest
from lomar_serve.jobs.store import STORE_FILE, JobRecord, LifecycleStore, open_store
from lomar_serve.worker.main import EXIT_FAILED
from tests.lomar_serve.control_plane.conftest import wait_for_job
from tests.lomar_serve.private_postgres import PrivatePostgres
from tests.lomar_serve.processes import WorkerProcess, alive, children, wait_until
from tests.lomar_serve.tiny_models import TINY_MODEL, TINY_OPTIONS

pytestmark = pytest.mark.e2e
OUTAGE_S = 30.0
EPOCHS = 20  # 3 to 50 s of training, as busy as the machine is: the outage is made to fall inside it (below)


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path


@pytest.fixture()
def store(private_postgres: PrivatePostgres) -> LifecycleStore:
    return open_store(private_postgres.new_database())


@pytest.fixture()
def queue(store: LifecycleStore, work: Path) -> Iterator[JobQueue]:
    """The control plane's queue with its sweeper, at the default heartbeat timeout."""
    queue = JobQueue(store, QueueSettings(jobs_dir=work / "jobs", sweep_interval_s=0.5))
    queue.start()
    yield queue
    queue.stop()


def submit(queue: JobQueue, data_root: Path, epochs: int) -> JobRecord:
    request = JobRequest(data_dir="base", epochs=epochs, options=dict(TINY_OPTIONS), **TINY_MODEL)
    return queue.submit(request.plan(DataRoots.of([data_root]), queue.settings.jobs_dir))


def training_step(record: JobRecord) -> int:
    return int(record.metrics.get("training", {}).get("step") or 0)


def training_pid(worker: WorkerProcess) -> int:
    """The training process (the leader of its process group) the worker runs now."""
    pids = [pid for pid in children(worker.process.pid) if alive(pid)]
    assert len(pids) == 1, f"expected one stage process under the worker, found {pids}\n{worker.log()}"
    return pids[0]


@pytest.mark.timeout(900)
def test_a_30_s_store_outage_during_training_leaves_the_job_to_succeed(private_postgres: PrivatePostgres,
                                                                       store: LifecycleStore, queue: JobQueue,
                                                                       work: Path, data_root: Path) -> None:
    worker = WorkerProcess(work, "w-outage", {"LOMAR_STORE_URL": store.url})  # the default retry budget
    try:
        job = submit(queue, data_root, EPOCHS)
        record = wait_for_job(queue, job.id, lambda r: r.state == "running" and training_step(r) > 0,
                              context=worker.log)
        training = training_pid(worker)
        # Training is paused for the outage, so that the outage falls inside it however fast the machine trains
        # (epochs take 0.1 to 2.5 s here): the worker sees a stage that runs on, as during a long training.
        os.killpg(training, signal.SIGSTOP)
        try:
            assert alive(training), f"training ended before the outage\n{worker.log()}"
            private_postgres.stop()
            stopped_at = time.monotonic()
            wait_until(lambda: worker.process.poll() is not None or time.monotonic() - stopped_at >= OUTAGE_S,
                       "the outage", timeout_s=OUTAGE_S + 10)
            assert worker.process.poll() is None, f"the worker exited during the outage:\n{worker.log()}"
            private_postgres.start()
        finally:
            os.killpg(training, signal.SIGCONT)

        wait_for_job(queue, job.id, lambda r: training_step(r) > training_step(record), timeout_s=60,
                     context=worker.log)  # progress is written again
        record = wait_for_job(queue, job.id, lambda r: r.state not in ("queued", "running"), timeout_s=600,
                              context=worker.log)
        assert record.state == "succeeded", queue.describe(job.id)["log_tail"] + worker.log()
        assert (record.worker, record.model_version) == ("w-outage", "1")
        assert record.metrics["training"]["epochs_done"] == EPOCHS
        log = worker.log(200_000)
        assert log.count(f"progress of job {job.id}: ") == 2, log  # the failure once, then the store's return
        assert f"progress of job {job.id}: the job store answers again after" in log

        second = submit(queue, data_root, 1)
        assert wait_for_job(queue, second.id, lambda r: r.state != "queued", timeout_s=60,
                            context=worker.log).worker == "w-outage"
        assert worker.stop() == 0
    finally:
        worker.stop()


@pytest.mark.timeout(300)
def test_a_worker_that_cannot_record_a_jobs_end_exits_3_and_leaves_the_job_to_the_sweeper(
        private_postgres: PrivatePostgres, store: LifecycleStore, work: Path, data_root: Path) -> None:
    """The store goes away during training, then training dies: the job's failure cannot be written within the
    worker's (short) retry budget, so the worker exits with status 3; the job stays `running` in the store until
    the sweeper, seeing no heartbeat, marks it interrupted (resumable)."""
    queue = JobQueue(store, QueueSettings(jobs_dir=work / "jobs", heartbeat_timeout_s=1.0))  # swept by hand here
    worker = WorkerProcess(work, "w-gone", {"LOMAR_STORE_URL": store.url, "LOMAR_STORE_RETRY_S": "1"})
    try:
        job = submit(queue, data_root, 500)
        wait_for_job(queue, job.id, lambda r: r.state == "running" and training_step(r) > 0, context=worker.log)
        training = training_pid(worker)
        private_postgres.stop()
        os.killpg(training, signal.SIGKILL)
        wait_until(lambda: worker.process.poll() is not None, "the worker to exit", timeout_s=60,
                   context=worker.log)
        assert worker.process.returncode == EXIT_FAILED, worker.log()
        log = worker.log()
        assert f"job {job.id} is left running: the job store was unreachable for 1 s" in log, log
        assert "the control plane's sweeper marks it interrupted (resumable)" in log and "Traceback" in log
        assert f"exiting with status {EXIT_FAILED}" in log
    finally:
        worker.stop()
    private_postgres.start()
    record = store.get_job(job.id)
    assert (record.state, record.worker) == ("running", "w-gone"), record
    wait_until(lambda: queue.sweep() == [job.id], "the sweeper to interrupt the job")
    assert store.get_job(job.id).state == "interrupted"


@pytest.mark.timeout(120)
def test_a_worker_whose_loop_breaks_exits_3(work: Path) -> None:
    """Not an outage: the store's jobs table is gone, so no claim can succeed however often it is tried."""
    worker = WorkerProcess(work, "w-broken")  # its store: JOBS_DIR/lifecycle.sqlite
    try:
        wait_until(lambda: (work / "jobs" / STORE_FILE).is_file() and "started" in worker.log(),
                   "the worker to start", timeout_s=60, context=worker.log)
        with sqlite3.connect(work / "jobs" / STORE_FILE) as db:
            db.execute("DROP TABLE jobs")
        wait_until(lambda: worker.process.poll() is not None, "the worker to exit", timeout_s=60,
                   context=worker.log)
        assert worker.process.returncode == EXIT_FAILED, worker.log()
        log = worker.log()
        assert "worker w-broken cannot go on: its job loop stopped: no such table: jobs" in log, log
        assert "Traceback" in log
    finally:
        worker.stop()
