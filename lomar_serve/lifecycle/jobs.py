"""The job runner: retrain jobs run training, then export, then verification (then an optional auto-deploy),
each stage as a subprocess whose output goes to the job's log file.

One job runs at a time, on one long-lived worker thread (the children get SIGTERM if the gateway dies, and the
kernel ties that signal to the thread that started them). Records live in the lifecycle store, so they survive
restarts: at start-up a job that was running is marked `interrupted` (its log and checkpoints are kept) and can
be resumed; training then continues from its last checkpoint (contracts.checkpoints). Cancelling terminates the stage's
whole process group (training's data-loader workers included).

    runner = JobRunner(store, JobSettings(jobs_dir=..., model_repository=...))
    runner.start()
    job = runner.submit(JobRequest(data_dir="new_images", init="base.pth", epochs=5).plan(roots, jobs_dir))
    runner.get(job.id).state   # queued -> running -> succeeded | failed | cancelled (| interrupted)
    runner.stop()
"""
from __future__ import annotations

import json
import logging
import queue
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import datasets
from contracts.checkpoints import file_sha256
from lomar_serve.lifecycle.errors import JobConflict, LifecycleError
from lomar_serve.lifecycle.executors import Execution, Executor, ExecutorError, LocalExecutor, StageRun
from lomar_serve.lifecycle.progress import job_progress, log_tail, read_records, training_progress
from lomar_serve.lifecycle.repository_view import RepositoryView
from lomar_serve.lifecycle.spec import JobPlan
from lomar_serve.lifecycle.stages import StagePaths, export_command, training_command, verification_command
from lomar_serve.lifecycle.store import JobRecord, LifecycleStore

LOGGER = logging.getLogger(__name__)
INTERRUPTED_MESSAGE = ("the gateway stopped while this job was running; its log and checkpoints are kept: "
                       "resume it (POST /v1/admin/jobs/{id}/resume, `lomar jobs resume {id}`) to continue from "
                       "its last checkpoint")


class StageFailed(LifecycleError):
    """A stage exited with an error; the message says which and points at the log."""


class JobStopped(Exception):
    """The running stage was stopped on purpose (cancel, or the gateway shutting down)."""


@dataclass(frozen=True)
class JobSettings:
    """Where jobs keep their files and how stages are run."""

    jobs_dir: Path  # JOBS_DIR/<id>/ holds job.log, train/ (checkpoints, metrics.jsonl), verification.json
    model_repository: Path  # exports add versions here
    python: str = sys.executable  # the interpreter that runs training, export and verification
    poll_interval_s: float = 1.0  # how often a running stage's progress is read
    terminate_grace_s: float = 10.0  # asked to stop, then forced after this long
    executor: Executor = field(default_factory=LocalExecutor)  # where stages run (executors.make_executor)


class JobRunner:
    """Queues, runs, cancels, recovers and resumes retrain jobs."""

    def __init__(self, store: LifecycleStore, settings: JobSettings, *,
                 serving_version: Callable[[str], str | None] = lambda name: None,
                 deploy: Callable[[str, str], dict[str, Any]] | None = None) -> None:
        """
        Args:
            store: where records live.
            settings: folders and timing.
            serving_version: the version of a model that serves now (the verification's baseline).
            deploy: deploy(name, version) for auto-deploy; None disables auto-deploy.
        """
        self.store = store
        self.settings = settings
        self.repository = RepositoryView(settings.model_repository)
        self._serving_version = serving_version
        self._deploy = deploy
        self._queue: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._current: str | None = None  # the running job's id
        self._process: Execution | None = None  # the running stage
        self._cancelled: set[str] = set()

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> list[str]:
        """Mark jobs left running by a previous process interrupted, requeue queued ones, start the worker.

        Returns the ids marked interrupted.
        """
        interrupted = self.store.interrupt_running(INTERRUPTED_MESSAGE.replace("{id}", "ID"))
        for job_id in interrupted:
            LOGGER.warning("job %s was running when the gateway stopped: marked interrupted", job_id)
        for record in reversed(self.store.list_jobs(limit=10_000, states=("queued",))):
            self._queue.put(record.id)
        self._thread = threading.Thread(target=self._work, name="lomar-jobs", daemon=True)
        self._thread.start()
        return interrupted

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker; a running job's process is terminated and the job marked interrupted (resumable)."""
        self._stopping.set()
        with self._lock:
            process = self._process
        self._terminate(process)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # -- requests --------------------------------------------------------------------------------------------
    def submit(self, plan: JobPlan) -> JobRecord:
        """Record a new job and queue it."""
        job_id = secrets.token_hex(6)
        paths = StagePaths(self.settings.jobs_dir / job_id)
        paths.job_dir.mkdir(parents=True, exist_ok=False)
        record = self.store.create_job(job_id, plan.kind, plan.to_dict(), log_path=paths.log,
                                       output_dir=paths.train, model_name=plan.model_name)
        self._queue.put(job_id)
        LOGGER.info("job %s queued: %s of %s -> model %s", job_id, plan.kind, plan.data_dir, plan.model_name)
        return record

    def get(self, job_id: str) -> JobRecord:
        return self.store.get_job(job_id)

    @property
    def running_pid(self) -> int | None:
        """Process id (also its process group's id) of the stage that runs now; None when none runs."""
        with self._lock:
            return None if self._process is None else self._process.pid

    def describe(self, job_id: str, tail_bytes: int = 4000) -> dict[str, Any]:
        """The record with the tail of its log."""
        record = self.store.get_job(job_id)
        return {**record.to_dict(), "log_tail": log_tail(Path(record.log_path), tail_bytes)}

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued, interrupted or running job (a running one's processes are terminated)."""
        record = self.store.get_job(job_id)
        if record.state in ("queued", "interrupted"):
            try:
                return self.store.transition(job_id, (record.state,), "cancelled", f"cancelled while {record.state}")
            except JobConflict:
                record = self.store.get_job(job_id)  # the worker picked it up meanwhile
        if record.state != "running":
            raise JobConflict(f"job {job_id} is {record.state}; only queued, running or interrupted jobs can be "
                              "cancelled")
        with self._lock:
            if self._current == job_id:
                self._cancelled.add(job_id)
                process = self._process
            else:
                process = None
        self._terminate(process)
        deadline = time.monotonic() + self.settings.terminate_grace_s + 5.0
        while time.monotonic() < deadline and self.store.get_job(job_id).state == "running":
            time.sleep(0.1)
        return self.store.get_job(job_id)

    def resume(self, job_id: str) -> JobRecord:
        """Queue an interrupted or failed job again; it continues at the stage it stopped in."""
        record = self.store.transition(job_id, ("interrupted", "failed"), "queued", "queued again (resume)")
        self._queue.put(job_id)
        return record

    # -- the worker ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(job_id)
            except Exception:  # a bug must not kill the worker; the job says what happened
                LOGGER.exception("job %s failed unexpectedly", job_id)
                self._finish(job_id, "failed", "internal error while running the job (see the gateway log)")

    def _run(self, job_id: str) -> None:
        with self._lock:  # a cancel sees the job running only once it can reach its process
            try:
                record = self.store.transition(job_id, ("queued",), "running", "running")
            except JobConflict:
                return  # cancelled while queued
            self._current = job_id
        plan = JobPlan.from_dict(record.params)
        paths = StagePaths(self.settings.jobs_dir / job_id)
        stages: list[tuple[str, Callable[[JobRecord, JobPlan, StagePaths], None]]] = [
            ("train", self._train), ("export", self._export), ("verify", self._verify)]
        if plan.auto_deploy:
            stages.append(("deploy", self._auto_deploy))
        names = [name for name, _ in stages]
        first = names.index(record.stage) if record.stage in names else 0
        try:
            for name, stage in stages[first:]:
                record = self.store.update_job(job_id, stage=name, progress=job_progress(name))
                self._log(paths, f"== stage {name} ==")
                stage(record, plan, paths)
            record = self.store.update_job(job_id, stage="done", progress=1.0)
            self._finish(job_id, "succeeded", self._summary(record))
        except JobStopped:
            if job_id in self._cancelled:
                self._finish(job_id, "cancelled", "cancelled while running")
            else:
                self._finish(job_id, "interrupted", INTERRUPTED_MESSAGE.replace("{id}", job_id))
        except LifecycleError as error:
            self._log(paths, f"job failed: {error.message}")
            self._finish(job_id, "failed", error.message)
        finally:
            with self._lock:
                self._current = None
                self._cancelled.discard(job_id)

    def _finish(self, job_id: str, state: str, message: str) -> None:
        try:
            self.store.transition(job_id, ("running",), state, message)
            LOGGER.info("job %s %s: %s", job_id, state, message)
        except JobConflict:
            LOGGER.warning("job %s was no longer running when it ended (%s)", job_id, state)

    @staticmethod
    def _summary(record: JobRecord) -> str:
        text = f"exported version {record.model_version} of {record.model_name}"
        deploy = record.metrics.get("deploy")
        if isinstance(deploy, dict):
            text += "; " + str(deploy.get("message", ""))
        return text

    # -- stages ----------------------------------------------------------------------------------------------
    def _train(self, record: JobRecord, plan: JobPlan, paths: StagePaths) -> None:
        self._check_fits_model(plan)

        def poll() -> None:
            fraction, figures = training_progress(read_records(paths.train), plan.epochs)
            self.store.update_job(record.id, progress=job_progress("train", fraction), metrics={"training": figures})

        self._run_stage(record.id, "training", training_command(plan, paths, self.settings.python), paths, poll)
        poll()
        if not paths.checkpoint.is_file():
            raise StageFailed(f"training ended without writing {paths.checkpoint.name}; see the job log")

    def _export(self, record: JobRecord, plan: JobPlan, paths: StagePaths) -> None:
        if record.model_version:  # a resumed job whose export had finished
            return
        before = set(self.repository.versions(plan.model_name))
        command = export_command(plan, paths, self.settings.model_repository,
                                 self.repository.image_size(plan.model_name), self.settings.python)
        self._run_stage(record.id, "export", command, paths)
        checkpoint = paths.checkpoint
        sha256 = file_sha256(checkpoint)
        cards = {v: self.repository.card(plan.model_name, v) for v in self.repository.versions(plan.model_name)
                 if v not in before}
        new = [v for v, card in cards.items() if card is not None and card.source_sha256 == sha256]
        if not new:
            raise StageFailed(f"export finished but no new version of {plan.model_name} comes from {checkpoint}")
        self.store.update_job(record.id, model_version=new[-1])
        self._log(paths, f"exported {plan.model_name} version {new[-1]}")

    def _verify(self, record: JobRecord, plan: JobPlan, paths: StagePaths) -> None:
        version = self.store.get_job(record.id).model_version
        baseline = self._serving_version(plan.model_name)
        command = verification_command(plan, paths, self.settings.model_repository, str(version), baseline,
                                       self.settings.python)
        self._run_stage(record.id, "verification", command, paths)
        try:
            result = json.loads(paths.verification.read_text())
        except (OSError, ValueError) as error:
            raise StageFailed(f"verification wrote no readable result ({error}); see the job log") from error
        self.store.update_job(record.id, metrics={"verification": result})

    def _auto_deploy(self, record: JobRecord, plan: JobPlan, paths: StagePaths) -> None:
        record = self.store.get_job(record.id)
        result = record.metrics.get("verification", {})
        version = str(record.model_version)
        if self._deploy is None:
            outcome = {"deployed": False, "message": "auto-deploy is not available in this process"}
        elif not result.get("not_worse", False):
            baseline = result.get("baseline") or {}
            outcome = {"deployed": False, "message": (
                f"not deployed: {result.get('metric')} {result.get('value'):.4g} is worse than the serving "
                f"version {baseline.get('version')}'s {baseline.get('value'):.4g}")}
        else:
            try:
                outcome = {"deployed": True, **self._deploy(plan.model_name, version),
                           "message": f"deployed version {version}"}
            except LifecycleError as error:
                self.store.update_job(record.id, metrics={"deploy": {"deployed": False, "message": error.message}})
                raise StageFailed(f"version {version} was exported but auto-deploy failed: {error.message}; "
                                  "the serving version is unchanged") from error
        self._log(paths, str(outcome["message"]))
        self.store.update_job(record.id, metrics={"deploy": outcome})

    def _check_fits_model(self, plan: JobPlan) -> None:
        """Versions of one model share one config: refuse early a fine-tune whose class count differs."""
        expected = self.repository.num_classes(plan.model_name)
        if plan.kind != "finetune" or expected is None:
            return
        classes = datasets.class_names(plan.train_dir)
        if len(classes) != expected:
            raise StageFailed(
                f"model {plan.model_name} has {expected} classes but {plan.train_dir} has {len(classes)} class "
                f"folders: versions of one model share one configuration; give another model_name")

    # -- processes -------------------------------------------------------------------------------------------
    def _run_stage(self, job_id: str, what: str, command: list[str], paths: StagePaths,
                   poll: Callable[[], None] | None = None) -> None:
        """Run one stage through the executor to its end, its output appended to the job log; StageFailed if it
        fails (ExecutorError if it cannot be started or followed)."""
        if self._stopping.is_set() or job_id in self._cancelled:
            raise JobStopped()
        self._log(paths, "$ " + " ".join(command))
        run = StageRun(job_id, what, tuple(command), paths.log, paths.job_dir, distributed=what == "training")
        execution = self.settings.executor.start(run)
        with self._lock:
            self._process = execution
        if self._stopping.is_set() or job_id in self._cancelled:  # asked to stop while it was starting
            self._terminate(execution)
        try:
            while (code := execution.wait(self.settings.poll_interval_s)) is None:
                if poll is not None:
                    poll()
        finally:
            with self._lock:
                self._process = None
        if self._stopping.is_set() or job_id in self._cancelled:
            raise JobStopped()
        if code != 0:
            raise StageFailed(f"{what} failed with exit code {code}: {last_error_line(paths.log)}")

    def _terminate(self, execution: Execution | None) -> None:
        """Stop a running stage: its executor asks it to stop and forces it after the grace period."""
        if execution is None:
            return
        try:
            execution.terminate(self.settings.terminate_grace_s)
        except ExecutorError as error:  # stopping goes on; the stage may still run, and the log says so
            LOGGER.error("%s could not be stopped: %s", execution.description, error.message)

    @staticmethod
    def _log(paths: StagePaths, line: str) -> None:
        with open(paths.log, "a", encoding="utf-8") as log:
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")


def last_error_line(log_path: Path) -> str:
    """The most telling line at the end of a stage's output (its last 'error' line, else its last line)."""
    lines = [line.strip() for line in log_tail(log_path, 8000).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no output; see the job log)"])[-1][:500]
