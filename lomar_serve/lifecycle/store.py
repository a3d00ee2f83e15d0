"""Durable lifecycle state in one SQLite file next to the model repository: job records and deployments.

Tables:
    jobs(id, kind, state, stage, params JSON, progress, metrics JSON, message, log_path, output_dir,
         model_name, model_version, created_at, updated_at)
    deployments(model, stack JSON, updated_at)      stack: versions deployed in order; the last one serves
    deployment_history(seq, model, action, version, previous, at)

Every call opens its own connection (WAL mode), so threads (the job worker, request handlers) share the store
safely; state changes are conditional updates inside one transaction, so two writers never both win.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lomar_serve.lifecycle.errors import JobConflict, JobNotFound, NothingToRollBack

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '', log_path TEXT NOT NULL, output_dir TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    model TEXT PRIMARY KEY, stack TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deployment_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL,
    previous TEXT, at REAL NOT NULL);
"""
UPDATABLE = ("stage", "progress", "metrics", "message", "model_version")


@dataclass(frozen=True)
class JobRecord:
    """One retrain job as stored."""

    id: str
    kind: str  # finetune | pretrain
    state: str  # one of JOB_STATES
    stage: str  # "" (not started) | train | export | verify | deploy | done
    params: dict[str, Any]  # the validated request
    progress: float  # 0..1 over the whole job
    metrics: dict[str, Any]  # latest training figures, verification results, deploy outcome
    message: str  # what happened last (the error of a failed job)
    log_path: str  # the job's log file (every stage's output)
    output_dir: str  # training output: checkpoints, metrics.jsonl
    model_name: str  # the Triton model the job exports to
    model_version: str | None  # the version it exported, once known
    created_at: float
    updated_at: float

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Deployment:
    """The versions deployed for one model, oldest first; the last one serves."""

    model: str
    stack: tuple[str, ...] = field(default_factory=tuple)

    @property
    def serving(self) -> str | None:
        return self.stack[-1] if self.stack else None

    @property
    def rollback_target(self) -> str | None:
        return self.stack[-2] if len(self.stack) > 1 else None


class LifecycleStore:
    """Job records and deployment stacks in the SQLite file `path` (created with its folder if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- jobs ------------------------------------------------------------------------------------------------
    def create_job(self, job_id: str, kind: str, params: dict[str, Any], *, log_path: Path, output_dir: Path,
                   model_name: str) -> JobRecord:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, state, params, log_path, output_dir, model_name, created_at, "
                "updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, kind, json.dumps(params), str(log_path), str(output_dir), model_name, now, now))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(row)

    def list_jobs(self, limit: int = 100, states: tuple[str, ...] = ()) -> list[JobRecord]:
        """Newest first."""
        query, args = "SELECT * FROM jobs", []
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += list(states)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, [*args, limit]).fetchall()
        return [_job(row) for row in rows]

    def update_job(self, job_id: str, **values: Any) -> JobRecord:
        """Set some of stage, progress, metrics (merged into the stored ones), message, model_version."""
        unknown = set(values) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction() as db:
            row = db.execute("SELECT metrics FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if "metrics" in values:
                values["metrics"] = json.dumps({**json.loads(row["metrics"]), **values["metrics"]})
            assignments = ", ".join(f"{name} = ?" for name in values)
            db.execute(f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                       [*values.values(), time.time(), job_id])
        return self.get_job(job_id)

    def transition(self, job_id: str, from_states: tuple[str, ...], to_state: str, message: str | None = None
                   ) -> JobRecord:
        """Move a job to `to_state` if it is in one of `from_states` (atomically); JobConflict otherwise."""
        if to_state not in JOB_STATES:
            raise ValueError(f"unknown job state {to_state!r}")
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if row["state"] not in from_states:
                raise JobConflict(f"job {job_id} is {row['state']}; this needs it to be {' or '.join(from_states)}")
            if message is None:
                db.execute("UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?", (to_state, time.time(), job_id))
            else:
                db.execute("UPDATE jobs SET state = ?, message = ?, updated_at = ? WHERE id = ?",
                           (to_state, message, time.time(), job_id))
        return self.get_job(job_id)

    def interrupt_running(self, message: str) -> list[str]:
        """Mark every running job interrupted (called at start-up: the process that ran them is gone)."""
        with self._transaction() as db:
            ids = [row["id"] for row in db.execute("SELECT id FROM jobs WHERE state = 'running'")]
            db.execute("UPDATE jobs SET state = 'interrupted', message = ?, updated_at = ? WHERE state = 'running'",
                       (message, time.time()))
        return ids

    # -- deployments -----------------------------------------------------------------------------------------
    def deployment(self, model: str) -> Deployment:
        with self._connect() as db:
            row = db.execute("SELECT stack FROM deployments WHERE model = ?", (model,)).fetchone()
        return Deployment(model, tuple(json.loads(row["stack"])) if row else ())

    def deployments(self) -> dict[str, Deployment]:
        with self._connect() as db:
            rows = db.execute("SELECT model, stack FROM deployments").fetchall()
        return {row["model"]: Deployment(row["model"], tuple(json.loads(row["stack"]))) for row in rows}

    def record_deploy(self, model: str, version: str, baseline: str | None = None) -> Deployment:
        """`version` now serves `model`. `baseline`: what served before any recorded deploy (rollback target)."""
        with self._transaction() as db:
            stack = self._stack(db, model)
            previous = stack[-1] if stack else baseline
            if not stack and baseline and baseline != version:
                stack.append(baseline)
            if not stack or stack[-1] != version:
                stack.append(version)
            self._save(db, model, stack, "deploy", version, previous)
        return Deployment(model, tuple(stack))

    def record_rollback(self, model: str, expected: Deployment) -> Deployment:
        """Pop the serving version, if the stack is still `expected` (else a concurrent change won: JobConflict)."""
        with self._transaction() as db:
            stack = self._stack(db, model)
            if tuple(stack) != expected.stack:
                raise JobConflict(f"the deployments of {model!r} changed meanwhile; try again")
            if len(stack) < 2:
                raise NothingToRollBack(f"model {model!r} has no earlier deployed version to roll back to")
            previous = stack.pop()
            self._save(db, model, stack, "rollback", stack[-1], previous)
        return Deployment(model, tuple(stack))

    def history(self, model: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT action, version, previous, at FROM deployment_history WHERE model = ? "
                              "ORDER BY seq", (model,)).fetchall()
        return [dict(row) for row in rows]

    @staticmethod
    def _stack(db: sqlite3.Connection, model: str) -> list[str]:
        row = db.execute("SELECT stack FROM deployments WHERE model = ?", (model,)).fetchone()
        return list(json.loads(row["stack"])) if row else []

    @staticmethod
    def _save(db: sqlite3.Connection, model: str, stack: list[str], action: str, version: str,
              previous: str | None) -> None:
        now = time.time()
        db.execute("INSERT INTO deployments (model, stack, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT(model) DO UPDATE SET stack = excluded.stack, updated_at = excluded.updated_at",
                   (model, json.dumps(stack), now))
        db.execute("INSERT INTO deployment_history (model, action, version, previous, at) VALUES (?, ?, ?, ?, ?)",
                   (model, action, version, previous, now))


def _job(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["metrics"] = json.loads(values["metrics"])
    return JobRecord(**values)
