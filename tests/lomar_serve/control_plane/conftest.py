"""Helpers of the control plane's tests: the admin API over a lifecycle in a temporary folder, its token, and a
wait for a job's state."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from lomar_serve.control_plane import routes
from lomar_serve.common.error_handlers import install_error_handlers
from lomar_serve.control_plane.queue import JobQueue
from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.jobs.store import JobRecord

TOKEN = "test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = {"data_dir": "set", "model": "lomar_tiny_patch16", "epochs": 1}


def admin_app(tmp_path: Path, token: str = TOKEN, **settings: Any) -> tuple[FastAPI, Lifecycle]:
    """The admin router alone with a lifecycle over tmp_path (data root data/ holding set/a, outside/ beside it);
    the job worker is not started, so submitted jobs stay queued. `settings`: other ControlPlaneSettings fields."""
    (tmp_path / "data" / "set" / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "repo").mkdir(exist_ok=True)
    lifecycle = Lifecycle(ControlPlaneSettings(**{
        "model_repository": tmp_path / "repo", "triton_urls": ("127.0.0.1:9",), "admin_token": token,
        "data_roots": (tmp_path / "data",), "jobs_dir": tmp_path / "jobs", **settings}))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(routes.router)
    app.state.lifecycle = lifecycle
    return app, lifecycle


def wait_for_job(queue: JobQueue, job_id: str, done: Callable[[JobRecord], bool], timeout_s: float = 240.0, *,
                 context: Callable[[], str] = lambda: "") -> JobRecord:
    """The job's record once `done(record)`; fails with its description (and `context()`) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = queue.get(job_id)
        if done(record):
            return record
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not get there in time: {queue.describe(job_id)}\n{context()}")
