"""A worker: claims queued jobs from the lifecycle store and runs them, training, then export, then verification
(then an optional auto-deploy), each stage through an executor (a local process or a Kubernetes Job) whose output
goes to the job's log file. An ingest job has one stage, run in this process: a folder sent to a gateway
(worker/ingest.py), stopped between its requests when the job is cancelled or the worker stops.

A worker runs one job at a time, on one long-lived thread (a stage's processes get SIGTERM if the worker dies:
the kernel ties that signal to the thread that started them). A second thread refreshes the job's heartbeat in
the store every few seconds; when the answer says the job was cancelled, or is no longer this worker's (the
control plane's sweeper gave it up after missed heartbeats), the stage's whole process group is terminated.
Stopping the worker (SIGTERM to `lomar worker`, or `stop()`) terminates the running stage and marks the job
`interrupted`; a resumed job continues at the stage it stopped in, training from its last checkpoint.

Every store call rides out an outage of the store for up to `store_retry_s` (retrying_store.py), and a progress
write that fails is skipped (the next poll writes again), so a job never fails because the store was away for a
while. Neither thread ends silently: whatever escapes one is logged with its traceback and becomes the worker's
`failure`, and so does a store still unreachable after the budget while a job's record must be written (the job
is left `running`; the control plane's sweeper marks it `interrupted`, resumable, once its heartbeat stops).
`lomar worker` exits non-zero on a failure, so that its supervisor restarts it.

    worker = Worker(store, JobSettings(jobs_dir=..., model_repository=...), worker_id="box-1")
    worker.start()      # claims and runs queued jobs until stopped
    worker.failure      # None while it can go on
    worker.stop()
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import datasets
from contracts.checkpoints import file_sha256
from contracts.triton_config import read_serving_version
from lomar_serve.clients.ingest import IngestStopped
from lomar_serve.jobs.errors import JobConflict, JobNotFound, LifecycleError, StoreUnavailable
from lomar_serve.jobs.files import RESUME_HINT, JobFiles
from lomar_serve.jobs.progress import job_progress, log_tail, read_records, training_progress
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.ingest import INGEST, INGEST_STAGE, IngestPlan
from lomar_serve.jobs.spec import JobPlan, plan_from_dict
from lomar_serve.jobs.store import JobRecord, LifecycleStore
from lomar_serve.worker.executors import Execution, Executor, ExecutorError, LocalExecutor, StageRun
from lomar_serve.worker.ingest import NO_GATEWAY, GatewayAccess, IngestFailed, run_ingest
from lomar_serve.worker.ingest import summary as ingest_summary
from lomar_serve.worker.retrying_store import RetryingStore
from lomar_serve.worker.stages import export_command, training_command, verification_command

LOGGER = logging.getLogger(__name__)
AUTO_DEPLOY_UNAVAILABLE = ("auto-deploy is not available: this worker has no control plane "
                           "(set LOMAR_CONTROL_PLANE_URL and LOMAR_ADMIN_TOKEN)")


class StageFailed(LifecycleError):
    """A stage exited with an error; the message says which and points at the log."""


class JobStopped(Exception):
    """The running stage was stopped on purpose (cancel, a lost job, or the worker stopping)."""


class WorkerFailed(Exception):
    """The worker cannot go on (its job's record cannot be written); the message says what became of the job."""


@dataclass(frozen=True)
class JobSettings:
    """Where jobs keep their files and how a worker runs stages."""

    jobs_dir: Path  # JOBS_DIR/<id>/ holds job.log, train/ (checkpoints, metrics.jsonl), verification.json
    model_repository: Path  # exports add versions here
    python: str = sys.executable  # the interpreter that runs training, export and verification
    poll_interval_s: float = 1.0  # how often a running stage's progress is read
    terminate_grace_s: float = 10.0  # SIGTERM, then SIGKILL after this long
    heartbeat_interval_s: float = 2.0  # well under the control plane's heartbeat timeout (15 s by default)
    claim_interval_s: float = 1.0  # how often an idle worker looks for a queued job
    store_retry_s: float = 15.0  # how long a store call is tried again (the control plane's heartbeat timeout)
    executor: Executor = field(default_factory=LocalExecutor)  # where stages run (executors.make_executor)

    def __post_init__(self) -> None:
        if not all(value > 0 for value in (self.poll_interval_s, self.terminate_grace_s, self.heartbeat_interval_s,
                                           self.claim_interval_s, self.store_retry_s)):
            raise ValueError(f"invalid worker timing: {self}")


class Worker:
    """Claims queued jobs and runs their stages; one job at a time."""

    def __init__(self, store: LifecycleStore, settings: JobSettings, worker_id: str, *,
                 deploy: Callable[[str, str], dict[str, Any]] | None = None,
                 gateway: GatewayAccess | None = None) -> None:
        """
        Args:
            store: where records live (shared with the control plane and other workers).
            settings: folders and timing.
            worker_id: this worker's name in job records (unique among the workers of a store).
            deploy: deploy(name, version) for auto-deploy (raises LifecycleError); None: auto-deploy is not
                available, and such jobs say so.
            gateway: the gateway ingest jobs add images through; None: they fail, saying so.
        """
        self.store = store
        self._store = RetryingStore(store, settings.store_retry_s)  # every call of the threads goes through it
        self.settings = settings
        self.worker_id = worker_id
        self.repository = RepositoryView(settings.model_repository)
        self._deploy = deploy
        self._gateway = gateway
        self._stopping = threading.Event()  # stop claiming; interrupt the running job
        self._halt = threading.Event()  # stop the heartbeat thread (after the job's record is final)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._current: str | None = None  # the running job's id
        self._process: Execution | None = None
        self._cancelled: set[str] = set()  # jobs whose heartbeat said: cancel requested
        self._lost: set[str] = set()  # jobs whose heartbeat said: no longer this worker's
        self._failure: BaseException | None = None  # why the worker cannot go on

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Claim and run queued jobs on a thread of this process until `stop()`."""
        self._stopping.clear()
        self._halt.clear()
        self._failure = None
        self._threads = [threading.Thread(target=self._guarded("job loop", self._work), name="lomar-worker",
                                          daemon=True),
                         threading.Thread(target=self._guarded("heartbeat loop", self._beat),
                                          name="lomar-worker-heartbeat", daemon=True)]
        for thread in self._threads:
            thread.start()
        LOGGER.info("worker %s started: store %s, jobs in %s", self.worker_id, self.store.describe(),
                    self.settings.jobs_dir)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop claiming; a running job's process is terminated and the job marked interrupted (resumable)."""
        self._stopping.set()
        with self._lock:
            process = self._process
        self._terminate(process)
        work, *others = self._threads or [None]
        if work is not None:
            work.join(timeout_s)
        self._halt.set()
        for thread in others:
            thread.join(timeout_s)
        self._threads = []

    @property
    def current_job(self) -> str | None:
        return self._current

    @property
    def failure(self) -> BaseException | None:
        """Why this worker cannot go on (it claims nothing more: stop it, and restart it); None while it can."""
        return self._failure

    @property
    def running_pid(self) -> int | None:
        """Process id (also its process group's id) of the stage that runs now; None when none runs."""
        with self._lock:
            return None if self._process is None else self._process.pid

    # -- the loop --------------------------------------------------------------------------------------------
    def _guarded(self, name: str, loop: Callable[[], None]) -> Callable[[], None]:
        """`loop` for a thread that must not end silently: whatever escapes it is logged with its traceback and
        becomes the worker's failure."""
        def run() -> None:
            try:
                loop()
            except BaseException as error:  # everything: a thread that ends unnoticed leaves a worker that does nothing
                LOGGER.critical("worker %s cannot go on: its %s stopped: %s", self.worker_id, name, error,
                                exc_info=True)
                self._fail(error)
        return run

    def _fail(self, error: BaseException) -> None:
        """Record why the worker cannot go on (the first reason) and stop claiming."""
        with self._lock:
            if self._failure is None:
                self._failure = error
        self._stopping.set()

    def _work(self) -> None:
        """Claim and run jobs until stopped. A job whose record cannot be written ends the loop (WorkerFailed): it
        is left `running`, for the sweeper to interrupt when this worker's heartbeat stops."""
        while not self._stopping.is_set():
            record = self._claim()
            if record is None:
                self._stopping.wait(self.settings.claim_interval_s)
                continue
            LOGGER.info("worker %s claimed job %s", self.worker_id, record.id)
            try:
                self._run_to_end(record)
            except StoreUnavailable as error:
                raise WorkerFailed(
                    f"job {record.id} is left running: the job store was unreachable for "
                    f"{self.settings.store_retry_s:g} s while its record was written ({error.message}); the control "
                    "plane's sweeper marks it interrupted (resumable) once its heartbeat stops") from error
            finally:
                with self._lock:
                    self._current = None  # no more heartbeats for it
                    self._cancelled.discard(record.id)
                    self._lost.discard(record.id)

    def _claim(self) -> JobRecord | None:
        """The oldest queued job, now this worker's; None when none is queued or the store is away (an idle worker
        holds nothing, so it waits for the store as long as it takes; the outage is logged once).

        A claim that the store committed but whose answer was lost is tried again and claims another job; the
        first is left running without heartbeats, and the sweeper interrupts it (resumable)."""
        try:
            return self._store.claim_next(self.worker_id, until=self._stopping)
        except StoreUnavailable:
            return None

    def _run_to_end(self, record: JobRecord) -> None:
        """Run a claimed job and write its final state. An unexpected error of the job fails the job, not the
        worker; StoreUnavailable (the store away past the retry budget) is for the caller."""
        try:
            self._run(record)
        except StoreUnavailable:
            raise
        except Exception:  # a bug in a stage must not kill the worker; the job says what happened
            LOGGER.exception("job %s failed unexpectedly", record.id)
            self._finish(record.id, "failed", "internal error while running the job (see the worker's log)")

    def _beat(self) -> None:
        """Refresh the running job's heartbeat; end its stage when it was cancelled or given up."""
        while not self._halt.wait(self.settings.heartbeat_interval_s):
            job_id = self._current
            if job_id is None:
                continue
            try:
                beat = self._store.heartbeat(job_id, self.worker_id, until=self._halt)
            except StoreUnavailable:  # logged once per outage: the sweeper decides, the next heartbeat learns it
                continue
            except Exception:  # not the store's absence: say so, and beat again next time
                LOGGER.exception("heartbeat of job %s failed", job_id)
                continue
            if beat.owned and not beat.cancel_requested:
                continue
            with self._lock:
                if self._current != job_id:
                    continue
                (self._cancelled if beat.owned else self._lost).add(job_id)
                process = self._process
            LOGGER.warning("job %s: %s; stopping it", job_id,
                           "cancel requested" if beat.owned else "no longer this worker's (its heartbeat was late)")
            self._terminate(process)

    def _stopped(self, job_id: str) -> bool:
        return self._stopping.is_set() or job_id in self._cancelled or job_id in self._lost

    def _run(self, record: JobRecord) -> None:
        job_id = record.id
        with self._lock:
            self._current = job_id
        plan = plan_from_dict(record.params)
        paths = JobFiles(self.settings.jobs_dir / job_id)
        paths.job_dir.mkdir(parents=True, exist_ok=True)
        stages: list[tuple[str, Callable[[JobRecord, Any, JobFiles], None]]]
        if isinstance(plan, IngestPlan):
            stages = [(INGEST_STAGE, self._ingest)]
        else:
            stages = [("train", self._train), ("export", self._export), ("verify", self._verify)]
            if plan.auto_deploy:
                stages.append(("deploy", self._auto_deploy))
        names = [name for name, _ in stages]
        first = names.index(record.stage) if record.stage in names else 0
        self._log(paths, f"== worker {self.worker_id} ==")
        try:
            for name, stage in stages[first:]:
                if self._stopped(job_id):
                    raise JobStopped()
                record = self._store.update_job(job_id, stage=name, progress=job_progress(name))
                self._log(paths, f"== stage {name} ==")
                stage(record, plan, paths)
            if self._stopped(job_id):
                raise JobStopped()
            record = self._store.update_job(job_id, stage="done", progress=1.0)
            self._finish(job_id, "succeeded", self._summary(record))
        except JobStopped:
            if job_id in self._lost:
                self._log(paths, f"worker {self.worker_id} stopped this job: it was given up as interrupted")
                LOGGER.warning("job %s is no longer this worker's; its record is left as it is", job_id)
            elif job_id in self._cancelled:
                self._finish(job_id, "cancelled", "cancelled while running; " + RESUME_HINT.replace("{id}", job_id))
            else:
                self._finish(job_id, "interrupted", f"the worker {self.worker_id} running this job was stopped; "
                                                    + RESUME_HINT.replace("{id}", job_id))
        except StoreUnavailable:  # not the job's failure: the store's (StoreUnavailable is a LifecycleError too)
            raise
        except LifecycleError as error:
            self._log(paths, f"job failed: {error.message}")
            self._finish(job_id, "failed", error.message)

    def _finish(self, job_id: str, state: str, message: str) -> None:
        """Write the job's final state; StoreUnavailable when the store stays away past the retry budget."""
        try:
            self._store.transition(job_id, ("running",), state, message, owner=self.worker_id)
            LOGGER.info("job %s %s: %s", job_id, state, message)
        except (JobConflict, JobNotFound) as error:
            LOGGER.warning("job %s could not be marked %s: %s", job_id, state, error.message)

    @staticmethod
    def _summary(record: JobRecord) -> str:
        if record.kind == INGEST:
            return ingest_summary(record.metrics["ingest"])
        text = f"exported version {record.model_version} of {record.model_name}"
        deploy = record.metrics.get("deploy")
        if isinstance(deploy, dict):
            text += "; " + str(deploy.get("message", ""))
        return text

    # -- stages ----------------------------------------------------------------------------------------------
    def _train(self, record: JobRecord, plan: JobPlan, paths: JobFiles) -> None:
        self._check_fits_model(plan)

        def progress() -> dict[str, Any]:
            fraction, figures = training_progress(read_records(paths.train), plan.epochs)
            return {"progress": job_progress("train", fraction), "metrics": {"training": figures}}

        def poll() -> None:  # a progress write that fails is skipped: the next poll writes again
            self._store.try_update_job(record.id, **progress())

        self._run_stage(record.id, "training", training_command(plan, paths, self.settings.python), paths, poll)
        self._store.update_job(record.id, **progress())  # the final figures are kept: retried
        if not paths.checkpoint.is_file():
            raise StageFailed(f"training ended without writing {paths.checkpoint.name}; see the job log")

    def _export(self, record: JobRecord, plan: JobPlan, paths: JobFiles) -> None:
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
        self._store.update_job(record.id, model_version=new[-1])
        self._log(paths, f"exported {plan.model_name} version {new[-1]}")

    def _verify(self, record: JobRecord, plan: JobPlan, paths: JobFiles) -> None:
        version = self._store.get_job(record.id).model_version
        baseline = read_serving_version(self.repository.model_dir(plan.model_name))  # the verification's baseline
        command = verification_command(plan, paths, self.settings.model_repository, str(version), baseline,
                                       self.settings.python)
        self._run_stage(record.id, "verification", command, paths)
        try:
            result = json.loads(paths.verification.read_text())
        except (OSError, ValueError) as error:
            raise StageFailed(f"verification wrote no readable result ({error}); see the job log") from error
        self._store.update_job(record.id, metrics={"verification": result})

    def _auto_deploy(self, record: JobRecord, plan: JobPlan, paths: JobFiles) -> None:
        record = self._store.get_job(record.id)
        result = record.metrics.get("verification", {})
        version = str(record.model_version)
        if self._deploy is None:
            outcome = {"deployed": False, "message": AUTO_DEPLOY_UNAVAILABLE}
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
                self._store.update_job(record.id, metrics={"deploy": {"deployed": False, "message": error.message}})
                raise StageFailed(f"version {version} was exported but auto-deploy failed: {error.message}; "
                                  "the serving version is unchanged") from error
        self._log(paths, str(outcome["message"]))
        self._store.update_job(record.id, metrics={"deploy": outcome})

    def _ingest(self, record: JobRecord, plan: IngestPlan, paths: JobFiles) -> None:
        if self._gateway is None:
            raise IngestFailed(NO_GATEWAY)
        written = 0.0

        def progress(figures: dict[str, Any]) -> None:  # at most once a poll interval; a failed write is skipped
            nonlocal written
            if time.monotonic() - written >= self.settings.poll_interval_s:
                written = time.monotonic()
                self._store.try_update_job(record.id, progress=round(figures["done"] / figures["files"], 4),
                                           metrics={"ingest": figures})

        self._log(paths, f"adding the images of {plan.data_dir} to collection {plan.collection} through "
                         f"{self._gateway.url}")
        try:
            with self._gateway.client(record.id) as client:
                figures = run_ingest(plan, client, paths, on_figures=progress, stop=lambda: self._stopped(record.id))
        except IngestStopped as stopped:
            self._log(paths, str(stopped))
            raise JobStopped() from stopped
        self._store.update_job(record.id, metrics={"ingest": figures})
        self._log(paths, ingest_summary(figures))

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
    def _run_stage(self, job_id: str, what: str, command: list[str], paths: JobFiles,
                   poll: Callable[[], None] | None = None) -> None:
        """Run one stage through the executor to its end, its output appended to the job log; StageFailed if it
        fails (ExecutorError if it cannot be started or followed)."""
        if self._stopped(job_id):
            raise JobStopped()
        self._log(paths, "$ " + " ".join(command))
        run = StageRun(job_id, what, tuple(command), paths.log, paths.job_dir, distributed=what == "training")
        execution = self.settings.executor.start(run)
        with self._lock:
            self._process = execution
        if self._stopped(job_id):  # asked to stop while it was starting
            self._terminate(execution)
        try:
            while (code := execution.wait(self.settings.poll_interval_s)) is None:
                if poll is not None:
                    poll()
        finally:
            with self._lock:
                self._process = None
        if self._stopped(job_id):
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
    def _log(paths: JobFiles, line: str) -> None:
        with open(paths.log, "a", encoding="utf-8") as log:
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")


def last_error_line(log_path: Path) -> str:
    """The most telling line at the end of a stage's output (its last 'error' line, else its last line)."""
    lines = [line.strip() for line in log_tail(log_path, 8000).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no output; see the job log)"])[-1][:500]
