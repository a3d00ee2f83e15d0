"""`lomar worker` as a real process on a SQLite store: SIGKILLed while it trains, its job becomes `interrupted`
through the control plane's sweep, is resumed, and a new worker finishes it from the last checkpoint.

The control plane here is the JobQueue in the test process (the same object the admin API uses), on the same
store file and JOBS_DIR as the workers."""
from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.checkpoints import LAST_CHECKPOINT
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobRequest
from lomar_serve.jobs.store import STORE_FILE, JobRecord, open_store
from tests.lomar_serve.processes import WorkerProcess, alive, children
from tests.lomar_serve.tiny_models import TINY_MODEL, TINY_OPTIONS
from tests.lomar_serve.control_plane.conftest import wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
HEARTBEAT_TIMEOUT_S = 4.0


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path


@pytest.fixture()
def queue(work: Path) -> Iterator[JobQueue]:
    queue = JobQueue(open_store(work / "jobs" / STORE_FILE),
                     QueueSettings(jobs_dir=work / "jobs", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
                                   sweep_interval_s=0.5))
    queue.start()
    yield queue
    queue.stop()


def wait_for(queue: JobQueue, job_id: str, done: Callable[[JobRecord], bool], worker: WorkerProcess | None,
             timeout_s: float = 300.0) -> JobRecord:
    return wait_for_job(queue, job_id, done, timeout_s, context=worker.log if worker else lambda: "")


def test_a_killed_worker_leaves_the_job_interrupted_and_a_new_one_resumes_it(work: Path, queue: JobQueue,
                                                                              data_root: Path) -> None:
    request = JobRequest(data_dir="base", epochs=4, options={**TINY_OPTIONS, "save_every_steps": 1}, **TINY_MODEL)
    job = queue.submit(request.plan(DataRoots.of([data_root]), queue.settings.jobs_dir))
    checkpoint = Path(job.output_dir) / LAST_CHECKPOINT
    first = WorkerProcess(work, "first")
    try:
        record = wait_for(queue, job.id, lambda r: checkpoint.is_file() and r.state == "running"
                          and bool(r.metrics.get("training", {}).get("step")), first)
        assert record.worker == "first"
        training = children(first.process.pid)
        assert training, "no training process under the worker"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
        killed_at = time.monotonic()
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in training) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in training if alive(pid)], "training outlived its worker"
    finally:
        first.stop()

    record = wait_for(queue, job.id, lambda r: r.state != "running", None, timeout_s=HEARTBEAT_TIMEOUT_S + 20)
    assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT_S + 10
    assert record.state == "interrupted", record
    assert record.message.startswith(f"the worker running this job stopped (no heartbeat for {HEARTBEAT_TIMEOUT_S:g}")
    assert f"lomar jobs resume {job.id}" in record.message and checkpoint.is_file()

    queue.resume(job.id)
    second = WorkerProcess(work, "second")
    try:
        record = wait_for(queue, job.id, lambda r: r.state not in ("queued", "running"), second)
        assert record.state == "succeeded", queue.describe(job.id)["log_tail"] + second.log()
        assert (record.worker, record.model_version) == ("second", "1")
        assert record.metrics["training"]["epochs_done"] >= 4
        log = Path(record.log_path).read_text()
        assert "== worker first ==" in log and "== worker second ==" in log
        resumed = re.search(r"resumed from \S+ at epoch (\d+), iteration (\d+) \(step (\d+)\)", log)
        assert resumed is not None, log[-3000:]
        assert int(resumed.group(3)) > 0  # not from scratch: from the checkpoint the first worker left
        assert second.stop() == 0  # SIGTERM: an idle worker leaves cleanly
    finally:
        second.stop()
