"""The job queue of the control plane: retrain jobs as records in the lifecycle store, run by workers.

The queue never runs a job itself: it records it `queued`, and any `lomar worker` (lomar_serve/worker/
runner.py), on this machine or another one sharing the store and JOBS_DIR, claims it. A worker refreshes a
heartbeat while it runs a job; the queue's sweeper marks a running job whose heartbeat stopped `interrupted`
(its worker died: its log and checkpoints are kept), and `resume` queues it again (a failed or cancelled one too),
to continue from its last checkpoint (contracts.checkpoints). Cancelling a running job asks its worker to end it, through the store.
While the store is unreachable no worker can beat either, so after an outage the sweeper interrupts nothing for
one heartbeat timeout: the workers beat again first.

    queue = JobQueue(store, QueueSettings(jobs_dir=...))
    queue.start()                      # the sweeper
    job = queue.submit(JobRequest(data_dir="new_images", init="base.pth", epochs=5).plan(roots, jobs_dir))
    queue.get(job.id).state            # queued -> running -> succeeded | failed | cancelled (| interrupted)
    queue.stop()
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lomar_serve.control_plane.background import Background
from lomar_serve.jobs.errors import JobConflict, ReportNotFound, StoreUnavailable
from lomar_serve.jobs.files import RESUME_HINT, JobFiles
from lomar_serve.jobs.progress import log_tail
from lomar_serve.jobs.report import Evaluation, is_thumbnail_name
from lomar_serve.jobs.ingest import IngestPlan
from lomar_serve.jobs.spec import JobPlan
from lomar_serve.jobs.store import JobRecord, LifecycleStore

LOGGER = logging.getLogger(__name__)
RESUMABLE_STATES = ("interrupted", "failed", "cancelled")


def stale_message(timeout_s: float) -> str:
    """What an interrupted job says when its worker's heartbeat stopped ("{id}" is left for the store)."""
    return f"the worker running this job stopped (no heartbeat for {timeout_s:g} s); {RESUME_HINT}"


@dataclass(frozen=True)
class QueueSettings:
    """Where jobs keep their files and how long the control plane waits for workers."""

    jobs_dir: Path  # JOBS_DIR/<id>/ holds job.log, train/ (checkpoints, metrics.jsonl), verification.json
    heartbeat_timeout_s: float = 15.0  # a running job without a heartbeat this long is interrupted
    sweep_interval_s: float = 3.0  # how often the sweeper looks for such jobs
    cancel_wait_s: float = 20.0  # how long cancelling a running job waits for its worker to end it

    def __post_init__(self) -> None:
        if not (self.heartbeat_timeout_s > 0 and self.sweep_interval_s > 0 and self.cancel_wait_s >= 0):
            raise ValueError(f"invalid queue timing: {self}")


class JobQueue:
    """Submits, shows, cancels and resumes retrain jobs; interrupts those whose worker stopped."""

    def __init__(self, store: LifecycleStore, settings: QueueSettings) -> None:
        self.store = store
        self.settings = settings
        self._sweeper = Background("lomar-job-sweeper", self._sweep_forever)

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Sweep once now (jobs left by workers that died while nothing watched), then every few seconds."""
        self.sweep()
        self._sweeper.start()

    def stop(self) -> None:
        self._sweeper.stop()

    def sweep(self) -> list[str]:
        """Mark running jobs whose worker sent no heartbeat for the timeout interrupted; their ids."""
        interrupted = self.store.interrupt_stale(self.settings.heartbeat_timeout_s,
                                                 stale_message(self.settings.heartbeat_timeout_s))
        for job_id in interrupted:
            LOGGER.warning("job %s: its worker sent no heartbeat for %g s; marked interrupted (resumable)", job_id,
                           self.settings.heartbeat_timeout_s)
        return interrupted

    def _sweep_forever(self, stop: threading.Event) -> None:
        """Sweep every few seconds; the sweeper outlives a store that is away. When the store answers again after
        a failed sweep, no job is interrupted for a heartbeat timeout: heartbeats missed during the outage say
        nothing about the workers."""
        outage_since: float | None = None
        quiet_until = 0.0
        while not stop.wait(self.settings.sweep_interval_s):
            try:
                if outage_since is not None:
                    self.store.now()  # is it back? (a sweep now would interrupt every running job)
                    quiet_until = time.monotonic() + self.settings.heartbeat_timeout_s
                    LOGGER.warning("the job store answers again after %.0f s; no job is interrupted for %g s, while "
                                   "workers beat again", time.monotonic() - outage_since,
                                   self.settings.heartbeat_timeout_s)
                    outage_since = None
                elif time.monotonic() >= quiet_until:
                    self.sweep()
            except StoreUnavailable as error:
                if outage_since is None:
                    outage_since = time.monotonic()
                    LOGGER.warning("sweeping stale jobs: %s; trying again every %g s", error.message,
                                   self.settings.sweep_interval_s)
            except Exception:  # not the store's absence: say so, and sweep again next time
                LOGGER.exception("sweeping stale jobs failed")

    # -- requests --------------------------------------------------------------------------------------------
    def submit(self, plan: JobPlan | IngestPlan) -> JobRecord:
        """Record a new job, queued for the next free worker."""
        job_id = secrets.token_hex(6)
        paths = JobFiles(self.settings.jobs_dir / job_id)
        paths.job_dir.mkdir(parents=True, exist_ok=False)
        record = self.store.create_job(job_id, plan.kind, plan.to_dict(), log_path=paths.log,
                                       output_dir=paths.train, model_name=plan.model_name)
        LOGGER.info("job %s queued: %s of %s", job_id, plan.kind, plan.data_dir)
        return record

    def get(self, job_id: str) -> JobRecord:
        return self.store.get_job(job_id)

    def list(self, limit: int = 100, states: tuple[str, ...] = ()) -> list[JobRecord]:
        """Newest first."""
        return self.store.list_jobs(limit, states)

    def describe(self, job_id: str, tail_bytes: int = 4000) -> dict[str, Any]:
        """The record with the tail of its log."""
        record = self.store.get_job(job_id)
        return {**record.to_dict(), "log_tail": log_tail(Path(record.log_path), tail_bytes)}

    def files(self, job_id: str) -> JobFiles:
        """The folder of an existing job (JobNotFound otherwise)."""
        self.store.get_job(job_id)
        return JobFiles(self.settings.jobs_dir / job_id)

    def evaluation(self, job_id: str) -> Evaluation:
        """The evaluation report its verification stage wrote; ReportNotFound before that stage has run."""
        record = self.store.get_job(job_id)
        path = JobFiles(self.settings.jobs_dir / job_id).evaluation
        try:
            return Evaluation.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ReportNotFound(f"job {job_id} has no evaluation report: its verification stage has not run (the "
                                 f"job is {record.state}, at stage {record.stage or 'none'})") from None
        except (OSError, ValidationError) as error:
            raise ReportNotFound(f"the evaluation report of job {job_id} cannot be read: "
                                 f"{str(error).splitlines()[0]}") from None

    def thumbnail(self, job_id: str, name: str) -> Path:
        """A thumbnail file of the job's evaluation report. Only names of the report's own form, inside the job's
        thumbnail folder after symlinks are followed, are served; ReportNotFound otherwise."""
        folder = self.files(job_id).thumbnails
        path = folder / name
        if not (is_thumbnail_name(name) and path.resolve().is_relative_to(folder.resolve()) and path.is_file()):
            raise ReportNotFound(f"job {job_id} has no thumbnail {name!r}")
        return path

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or interrupted job at once; ask a running job's worker to end it and wait a while.

        A running job still `running` when the wait is over has `cancel_requested` set: its worker ends it at its
        next heartbeat, or the sweeper does when that worker is gone.
        """
        record = self.store.get_job(job_id)
        if record.state in ("queued", "interrupted"):
            message = f"cancelled while {record.state}"
            if record.state == "interrupted":
                message += "; " + RESUME_HINT.replace("{id}", job_id)
            try:
                return self.store.transition(job_id, (record.state,), "cancelled", message)
            except JobConflict:
                record = self.store.get_job(job_id)  # a worker claimed it meanwhile
        if record.state != "running":
            raise JobConflict(f"job {job_id} is {record.state}; only queued, running or interrupted jobs can be "
                              "cancelled")
        self.store.request_cancel(job_id)
        deadline = time.monotonic() + self.settings.cancel_wait_s
        while time.monotonic() < deadline:
            record = self.store.get_job(job_id)
            if record.state != "running":
                return record
            time.sleep(0.2)
        LOGGER.warning("job %s: its worker %s has not ended it yet; it will at its next heartbeat", job_id,
                       record.worker)
        return self.store.get_job(job_id)

    def resume(self, job_id: str) -> JobRecord:
        """Queue an interrupted, failed or cancelled job again; a worker continues it at the stage it stopped in
        (training from its last checkpoint)."""
        return self.store.transition(job_id, RESUMABLE_STATES, "queued", "queued again (resume)")
