"""The control plane's job queue without any worker process, on both stores: submit, cancel, resume, the stale-job
sweeper (also after a store outage); the worker's settings and control-plane hooks."""
from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.jobs.errors import DeployError, JobConflict
from lomar_serve.jobs.spec import JobPlan
from lomar_serve.jobs.store import STORE_FILE, open_store
from lomar_serve.worker.executors import ExecutorSettings
from lomar_serve.worker.main import build_worker, control_plane_deploy
from lomar_serve.worker.settings import WorkerSettings
from tests.lomar_serve.private_postgres import PrivatePostgres
from tests.lomar_serve.processes import free_port, wait_until

PLAN = JobPlan(kind="finetune", data_dir="/data/set", model_name="m", epochs=1, model="lomar_tiny_patch16")


def make_queue(store_url: str, tmp_path: Path, **timing: float) -> JobQueue:
    return JobQueue(open_store(store_url), QueueSettings(jobs_dir=tmp_path / "jobs", **timing))


def test_submit_cancel_and_resume_without_a_worker(store_url: str, tmp_path: Path) -> None:
    queue = make_queue(store_url, tmp_path, cancel_wait_s=0.5)
    job = queue.submit(PLAN)
    assert (job.state, job.worker) == ("queued", None) and Path(job.log_path).parent.is_dir()
    assert [record.id for record in queue.list()] == [job.id]
    assert queue.cancel(job.id).state == "cancelled"
    assert queue.resume(job.id).state == "queued"  # a cancelled job may be resumed
    assert queue.cancel(job.id).state == "cancelled"

    running = queue.submit(PLAN)
    assert queue.store.claim_next("w1").id == running.id  # a worker took it, then went quiet
    started = time.monotonic()
    record = queue.cancel(running.id)  # nobody ends it: the wait runs out, the request stays
    assert time.monotonic() - started >= 0.5
    assert (record.state, record.cancel_requested) == ("running", True)
    with pytest.raises(JobConflict):
        queue.resume(running.id)  # only interrupted, failed or cancelled jobs are resumed
    assert queue.store.heartbeat(running.id, "w1").cancel_requested  # what the worker learns next


def test_the_sweeper_interrupts_a_silent_workers_job_and_resume_queues_it(store_url: str, tmp_path: Path) -> None:
    queue = make_queue(store_url, tmp_path, heartbeat_timeout_s=0.5, sweep_interval_s=0.1)
    job = queue.submit(PLAN)
    queue.store.claim_next("w1")
    queue.start()
    try:
        deadline = time.monotonic() + 10
        while queue.get(job.id).state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        queue.stop()
    record = queue.get(job.id)
    assert record.state == "interrupted"
    assert record.message.startswith("the worker running this job stopped (no heartbeat for 0.5 s)")
    assert f"/v1/admin/jobs/{job.id}/resume" in record.message and f"lomar jobs resume {job.id}" in record.message
    assert queue.resume(job.id).state == "queued"
    assert queue.store.claim_next("w2").id == job.id


def test_after_a_store_outage_the_sweeper_lets_workers_beat_again_first(private_postgres: PrivatePostgres,
                                                                         caplog: pytest.LogCaptureFixture,
                                                                         tmp_path: Path) -> None:
    """No worker can beat while the store is away: once it is back, a job whose heartbeat is older than the
    timeout only because of the outage is not interrupted before its worker has had a timeout to beat again."""
    caplog.set_level(logging.INFO, logger="lomar_serve.control_plane")

    def logged(text: str) -> bool:
        return any(text in record.getMessage() for record in caplog.records)

    timeout_s = 1.0
    queue = make_queue(private_postgres.new_database(), tmp_path, heartbeat_timeout_s=timeout_s, sweep_interval_s=0.1)
    job = queue.submit(PLAN)
    queue.store.claim_next("w1")
    queue.start()
    try:
        private_postgres.stop()
        stopped_at = time.monotonic()
        wait_until(lambda: logged("sweeping stale jobs"), "the sweeper to notice the outage")
        wait_until(lambda: time.monotonic() - stopped_at >= 3 * timeout_s, "an outage of three timeouts")
        private_postgres.start()
        wait_until(lambda: logged("answers again"), "the sweeper to notice the store's return")
        assert queue.store.heartbeat(job.id, "w1").owned, "interrupted before its worker could beat again"
        # no more beats: the sweeper does its work again
        wait_until(lambda: queue.get(job.id).state != "running", "the sweeper to interrupt the silent job")
        assert queue.get(job.id).state == "interrupted"
    finally:
        queue.stop()


def test_worker_settings_defaults_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOMAR_MODEL_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("LOMAR_WORKER_ID", "gpu-1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # jobs default to the user's data folder
    jobs = tmp_path / "xdg" / "lomar" / "jobs"
    settings = WorkerSettings()
    assert settings.resolved_jobs_dir == jobs.resolve()
    assert settings.resolved_store_url == str((jobs / STORE_FILE).resolve())
    worker = build_worker(settings)
    assert worker.worker_id == "gpu-1" and (jobs / STORE_FILE).is_file()
    monkeypatch.delenv("LOMAR_WORKER_ID")
    assert WorkerSettings().worker_id.endswith(f"-{os.getpid()}")
    # a worker retries a store call for as long as the control plane waits for a silent job's heartbeat
    assert WorkerSettings().store_retry_s == ControlPlaneSettings.model_fields["job_heartbeat_timeout_s"].default
    assert worker.settings.store_retry_s == settings.store_retry_s == 15.0
    with pytest.raises(ValueError):
        ExecutorSettings(executor="slurm")  # the worker's executor: local or kubernetes
    with pytest.raises(ValueError):
        WorkerSettings(worker_id="bad id with spaces")


def test_auto_deploy_when_the_control_plane_cannot_be_reached() -> None:
    deploy = control_plane_deploy(f"http://127.0.0.1:{free_port()}", "token-123456")
    with pytest.raises(DeployError, match="cannot reach"):
        deploy("lomar_classifier", "2")


class Refusing(http.server.BaseHTTPRequestHandler):
    """A control plane whose deploy route answers 409 switch_in_progress to the first `busy` requests, then 200."""

    busy = 2
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the handler's method name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Refusing.seen.append(self.path)
        if len(Refusing.seen) <= Refusing.busy:
            status, body = 409, {"error": {"code": "switch_in_progress", "message": "the deploy of m is in progress"}}
        else:
            status, body = 200, {"model": "m", "version": "2", "previous": "1", "changed": True}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_auto_deploy_asks_again_while_another_switch_runs() -> None:
    """The control plane refuses a second switch at once; a worker's auto-deploy waits its turn, within a limit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        Refusing.seen.clear()
        assert control_plane_deploy(url, "token-123456", retry_s=0.01)("m", "2")["version"] == "2"
        assert Refusing.seen == ["/v1/admin/models/m/deploy"] * 3
        Refusing.seen.clear()
        with pytest.raises(DeployError, match="switch_in_progress"):
            control_plane_deploy(url, "token-123456", wait_s=0.0, retry_s=0.01)("m", "2")
        assert len(Refusing.seen) == 1
    finally:
        server.shutdown()
