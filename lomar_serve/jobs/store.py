"""Durable lifecycle state: job records and deployments, in SQLite (one box) or PostgreSQL (a fleet).

    store = open_store("/srv/jobs/lifecycle.sqlite")          # or "postgresql://user:pw@db/lomar"

Tables:
    jobs(id, kind, state, stage, params JSON, progress, metrics JSON, message, log_path, output_dir,
         model_name, model_version, created_at, updated_at, worker, heartbeat_at, cancel_requested)
    deployments(model, stack JSON, updated_at)      stack: versions deployed in order; the last one serves
    deployment_history(seq, model, action, version, previous, at)
    pending_switches(model, action, version, previous, at)   a switch begun, not yet completed (deploy_history.py)
    api_keys(id, name, scopes JSON, digest, rate_per_minute, max_collections, created_at, revoked_at)
                                                    the data plane's keys: SHA-256 of the secret, never the secret

The SQL is written once (with `?` parameters); `Dialect` holds the few differences between the two databases.
Every call opens its own connection, so threads and processes (the control plane, any number of workers) share
the store; state changes are conditional updates inside one transaction (SQLite: BEGIN IMMEDIATE, PostgreSQL:
row locks), so two writers never both win: two workers never claim one job. Times are the database's clock
(Unix seconds), so heartbeats written by workers on other machines compare with one clock. A call that cannot
reach the store, or loses it midway (PostgreSQL restarting, a broken connection), raises StoreUnavailable: the one
error a caller may meet with trying again (the worker does: worker/retrying_store.py).
"""
from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lomar_serve.common.api_keys import KeyGrant
from lomar_serve.common.redaction import mask_secrets, redact
from lomar_serve.jobs.deploy_history import Event, PendingSwitch, Stack, deployed, repaired, rolled_back
from lomar_serve.jobs.errors import JobConflict, JobNotFound, KeyNotFound, StoreUnavailable

STORE_FILE = "lifecycle.sqlite"  # the default store: JOBS_DIR/lifecycle.sqlite
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A libpq keyword string ("host=db dbname=lomar password=..."): PostgreSQL too, never a SQLite file of that name.
KEYWORD_DSN = re.compile(r"\s*[A-Za-z_]+\s*=")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
UPDATABLE = ("stage", "progress", "metrics", "message", "model_version")


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL for this store (everything else is the same SQL)."""

    name: str
    real: str  # a float column (PostgreSQL's REAL has 4 bytes: too few for Unix times)
    serial: str  # an auto-numbered integer primary key
    job_order: str  # insertion order of jobs (ties of equal created_at)
    job_order_column: str  # its declaration in CREATE TABLE jobs ("" where it is implicit)
    now: str  # the database clock in Unix seconds
    begin: str  # starts a write transaction
    for_update: str  # appended to a SELECT whose rows the transaction then changes
    skip_locked: str  # ... and that passes over rows another transaction holds (claiming a job)
    schema_lock: str  # serialises schema creation and migration of processes that open the store at once
    job_columns: str  # one row per column of the jobs table, named `name`
    on_open: tuple[str, ...] = ()  # run once, outside a transaction, when the store opens
    parameter: str = "?"  # the driver's parameter placeholder


SQLITE = Dialect(
    name="sqlite", real="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT", job_order="rowid", job_order_column="",
    now="((julianday('now') - 2440587.5) * 86400.0)", begin="BEGIN IMMEDIATE", for_update="", skip_locked="",
    schema_lock="", job_columns="SELECT name FROM pragma_table_info('jobs')", on_open=("PRAGMA journal_mode=WAL",))
POSTGRES = Dialect(
    name="postgresql", real="DOUBLE PRECISION", serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    job_order="seq", job_order_column="seq BIGINT GENERATED ALWAYS AS IDENTITY,",
    now="(EXTRACT(EPOCH FROM clock_timestamp())::double precision)", begin="BEGIN", for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED", schema_lock="SELECT pg_advisory_xact_lock(73105)",
    job_columns="SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'jobs' "
                "AND table_schema = current_schema()",
    parameter="%s")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    {job_order_column}
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL, progress {real} NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{{}}',
    message TEXT NOT NULL DEFAULT '', log_path TEXT NOT NULL, output_dir TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT, created_at {real} NOT NULL, updated_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    model TEXT PRIMARY KEY, stack TEXT NOT NULL, updated_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS deployment_history (
    seq {serial}, model TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL, previous TEXT,
    at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS pending_switches (
    model TEXT PRIMARY KEY, action TEXT NOT NULL, version TEXT NOT NULL, previous TEXT, at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL, digest TEXT NOT NULL, rate_per_minute INTEGER,
    max_collections INTEGER, created_at {real} NOT NULL, revoked_at {real})
"""
# Columns added since the first schema: added to existing stores when they open (the migration).
ADDED_JOB_COLUMNS = {"worker": "TEXT", "heartbeat_at": "{real}", "cancel_requested": "INTEGER NOT NULL DEFAULT 0"}


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
    worker: str | None = None  # the worker that claimed it last
    heartbeat_at: float | None = None  # that worker's last heartbeat (the database's clock)
    cancel_requested: bool = False  # a cancel waits for the running job's worker to end it

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


JOB_COLUMNS = ", ".join(f.name for f in fields(JobRecord))


@dataclass(frozen=True)
class Heartbeat:
    """What a worker learns when it refreshes its heartbeat."""

    owned: bool  # the job is still running and still this worker's (False: stop it, leave its record alone)
    cancel_requested: bool  # someone asked to cancel it: end it as cancelled


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


@dataclass(frozen=True)
class KeyRecord:
    """An API key as listed: everything but its digest."""

    id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_minute: int | None
    max_collections: int | None
    created_at: float
    revoked_at: float | None  # None: active

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KEY_COLUMNS = ", ".join(f.name for f in fields(KeyRecord))


class _Session:
    """One connection: `execute` takes `?` parameters in either dialect and yields rows as dicts."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        if self.dialect.parameter != "?":
            sql = sql.replace("?", self.dialect.parameter)
        return self.connection.execute(sql, args)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def open_store(url: str | Path) -> LifecycleStore:
    """The store at `url`: a file path (SQLite, the one-box default) or PostgreSQL (a fleet): `postgresql://...` or
    a libpq keyword string (`host=db dbname=lomar ...`)."""
    return LifecycleStore(url)


def is_postgres(url: str) -> bool:
    """Whether a store URL names a PostgreSQL database (else it is a SQLite file)."""
    return url.startswith(POSTGRES_SCHEMES) or KEYWORD_DSN.match(url) is not None


class LifecycleStore:
    """Job records and deployment stacks in a SQLite file (created with its folder) or a PostgreSQL database."""

    def __init__(self, url: str | Path) -> None:
        text = str(url)
        if is_postgres(text):
            self.dialect, self.url, self.path = POSTGRES, text, None
        else:
            self.dialect, self.url, self.path = SQLITE, text, Path(url)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._create_or_migrate()
        except StoreUnavailable:
            raise
        except Exception as error:  # the driver's error (sqlite3.Error, psycopg.Error): e.g. a read-only folder
            raise self._unavailable("cannot be set up", error) from None

    def _create_or_migrate(self) -> None:
        """The tables if missing, and the columns added since an existing store was made."""
        with self._connect() as db:
            for statement in self.dialect.on_open:
                db.execute(statement)
        with self._transaction() as db:
            if self.dialect.schema_lock:
                db.execute(self.dialect.schema_lock)
            names = {"real": self.dialect.real, "serial": self.dialect.serial,
                     "job_order_column": self.dialect.job_order_column}
            for statement in SCHEMA.format(**names).split(";"):
                db.execute(statement)
            present = {row["name"] for row in db.execute(self.dialect.job_columns)}
            for column, kind in ADDED_JOB_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind.format(**names)}")

    def describe(self) -> str:
        """Where the store is, its secrets masked (for logs and error messages)."""
        return mask_secrets(str(self.path) if self.path is not None else self.url)

    def _unavailable(self, what: str, error: Exception) -> StoreUnavailable:
        """StoreUnavailable with the driver's message, the store's secrets masked in it (libpq quotes a
        malformed URL whole). Raise it `from None`: the driver's own exception, chained, would show them in a
        traceback."""
        return StoreUnavailable(f"the job store {self.describe()} {what}: {redact(str(error), self.url)}")

    @contextmanager
    def _connect(self) -> Iterator[_Session]:
        if self.dialect is POSTGRES:
            try:
                import psycopg
                from psycopg.rows import dict_row
            except ImportError as error:
                raise StoreUnavailable("a PostgreSQL store needs psycopg: pip install 'lomar[search]'") from error
            try:
                connection = psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
            except psycopg.Error as error:
                raise self._unavailable("is not reachable", error) from None
        else:
            try:
                connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            except sqlite3.Error as error:
                raise self._unavailable("cannot be opened", error) from None
            connection.row_factory = _dict_row
        try:
            yield _Session(connection, self.dialect)
        except Exception as error:
            if self.dialect is POSTGRES and _connection_lost(error):
                raise StoreUnavailable(f"the job store {self.describe()} went away during a call: {error}") from error
            raise
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[_Session]:
        with self._connect() as db:
            db.execute(self.dialect.begin)
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- jobs ------------------------------------------------------------------------------------------------
    def now(self) -> float:
        """The database's clock (Unix seconds): the one every time in the store is stamped and aged with."""
        with self._connect() as db:
            return float(db.execute(f"SELECT {self.dialect.now} AS now").fetchone()["now"])

    def create_job(self, job_id: str, kind: str, params: dict[str, Any], *, log_path: Path, output_dir: Path,
                   model_name: str) -> JobRecord:
        now = self.dialect.now
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, state, params, log_path, output_dir, model_name, created_at, "
                f"updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, {now}, {now})",
                (job_id, kind, json.dumps(params), str(log_path), str(output_dir), model_name))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(row)

    def list_jobs(self, limit: int = 100, states: tuple[str, ...] = ()) -> list[JobRecord]:
        """Newest first."""
        query, args = f"SELECT {JOB_COLUMNS} FROM jobs", []
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += list(states)
        query += f" ORDER BY created_at DESC, {self.dialect.job_order} DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, [*args, limit]).fetchall()
        return [_job(row) for row in rows]

    def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (a state without jobs is absent)."""
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {row["state"]: int(row["n"]) for row in rows}

    def update_job(self, job_id: str, **values: Any) -> JobRecord:
        """Set some of stage, progress, metrics (merged into the stored ones), message, model_version."""
        unknown = set(values) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction() as db:
            row = db.execute(f"SELECT metrics FROM jobs WHERE id = ?{self.dialect.for_update}",
                             (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if "metrics" in values:
                values["metrics"] = json.dumps({**json.loads(row["metrics"]), **values["metrics"]})
            assignments = ", ".join(f"{name} = ?" for name in values)
            db.execute(f"UPDATE jobs SET {assignments}, updated_at = {self.dialect.now} WHERE id = ?",
                       [*values.values(), job_id])
        return self.get_job(job_id)

    def transition(self, job_id: str, from_states: tuple[str, ...], to_state: str, message: str | None = None, *,
                   owner: str | None = None) -> JobRecord:
        """Move a job to `to_state` if it is in one of `from_states` (and, given `owner`, still that worker's),
        atomically; JobConflict otherwise."""
        if to_state not in JOB_STATES:
            raise ValueError(f"unknown job state {to_state!r}")
        with self._transaction() as db:
            row = db.execute(f"SELECT state, worker FROM jobs WHERE id = ?{self.dialect.for_update}",
                             (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if row["state"] not in from_states:
                raise JobConflict(f"job {job_id} is {row['state']}; this needs it to be {' or '.join(from_states)}")
            if owner is not None and row["worker"] != owner:
                raise JobConflict(f"job {job_id} is no longer run by worker {owner} (now {row['worker']})")
            assignments, args = "state = ?", [to_state]
            if message is not None:
                assignments, args = assignments + ", message = ?", [*args, message]
            db.execute(f"UPDATE jobs SET {assignments}, updated_at = {self.dialect.now} WHERE id = ?",
                       [*args, job_id])
        return self.get_job(job_id)

    def claim_next(self, worker_id: str) -> JobRecord | None:
        """The oldest queued job, now running and owned by `worker_id` (None when none is queued).

        Atomic: of workers claiming at once, each job goes to exactly one of them.
        """
        now = self.dialect.now
        with self._transaction() as db:
            row = db.execute(f"SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, "
                             f"{self.dialect.job_order} LIMIT 1{self.dialect.skip_locked}").fetchone()
            if row is None:
                return None
            db.execute(f"UPDATE jobs SET state = 'running', worker = ?, heartbeat_at = {now}, cancel_requested = 0, "
                       f"message = ?, updated_at = {now} WHERE id = ? AND state = 'queued'",
                       (worker_id, f"running on worker {worker_id}", row["id"]))
        return self.get_job(row["id"])

    def heartbeat(self, job_id: str, worker_id: str) -> Heartbeat:
        """Refresh the heartbeat of a job `worker_id` runs; says whether it still does and whether to cancel."""
        with self._transaction() as db:
            row = db.execute(f"SELECT cancel_requested FROM jobs WHERE id = ? AND worker = ? AND state = 'running'"
                             f"{self.dialect.for_update}", (job_id, worker_id)).fetchone()
            if row is None:
                return Heartbeat(owned=False, cancel_requested=False)
            db.execute(f"UPDATE jobs SET heartbeat_at = {self.dialect.now} WHERE id = ?", (job_id,))
        return Heartbeat(owned=True, cancel_requested=bool(row["cancel_requested"]))

    def request_cancel(self, job_id: str) -> JobRecord:
        """Ask the worker running `job_id` to cancel it (it sees the request at its next heartbeat)."""
        with self._transaction() as db:
            row = db.execute(f"SELECT state FROM jobs WHERE id = ?{self.dialect.for_update}", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if row["state"] != "running":
                raise JobConflict(f"job {job_id} is {row['state']}; only a running job waits for its worker to "
                                  "cancel it")
            db.execute(f"UPDATE jobs SET cancel_requested = 1, updated_at = {self.dialect.now} WHERE id = ?",
                       (job_id,))
        return self.get_job(job_id)

    def interrupt_stale(self, max_age_s: float, message: str) -> list[str]:
        """Running jobs whose worker sent no heartbeat for `max_age_s` become interrupted (resumable), with
        `message` ("{id}" in it becomes the job's id); those whose cancel was requested become cancelled.

        Returns the ids of the jobs interrupted.
        """
        now = self.dialect.now
        with self._transaction() as db:
            rows = db.execute(f"SELECT id, cancel_requested FROM jobs WHERE state = 'running' AND "
                              f"(heartbeat_at IS NULL OR heartbeat_at < {now} - ?){self.dialect.for_update}",
                              (max_age_s,)).fetchall()
            interrupted = [row["id"] for row in rows if not row["cancel_requested"]]
            cancelled = [row["id"] for row in rows if row["cancel_requested"]]
            for ids, state, text in ((interrupted, "interrupted", message),
                                     (cancelled, "cancelled", "cancelled (its worker stopped before it could end "
                                                              "the job)")):
                if ids:
                    db.execute(f"UPDATE jobs SET state = ?, message = REPLACE(?, '{{id}}', id), updated_at = {now} "
                               f"WHERE id IN ({', '.join('?' * len(ids))})", [state, text, *ids])
        return interrupted

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
            stack, event = deployed(self._stack(db, model), version, baseline)
            self._save(db, model, stack, [event])
        return Deployment(model, stack)

    def record_rollback(self, model: str, expected: Deployment) -> Deployment:
        """Pop the serving version, if the stack is still `expected` (else a concurrent change won: JobConflict)."""
        with self._transaction() as db:
            stack = self._stack(db, model)
            if stack != expected.stack:
                raise JobConflict(f"the deployments of {model!r} changed meanwhile; try again")
            stack, event = rolled_back(stack)
            self._save(db, model, stack, [event])
        return Deployment(model, stack)

    # -- switches around the publish (deploy_history.py) ---------------------------------------------------
    def begin_switch(self, switch: PendingSwitch) -> None:
        """Note a switch about to be published (replacing a pending one of the model, which the deployer has
        resolved before beginning another)."""
        with self._transaction() as db:
            db.execute(f"INSERT INTO pending_switches (model, action, version, previous, at) "
                       f"VALUES (?, ?, ?, ?, {self.dialect.now}) ON CONFLICT(model) DO UPDATE SET "
                       "action = excluded.action, version = excluded.version, previous = excluded.previous, "
                       "at = excluded.at", (switch.model, switch.action, switch.version, switch.previous))

    def complete_switch(self, model: str, published: str) -> Deployment:
        """The model's pending switch, whose version is now `published`, enters the history (repair rules)."""
        return self.repair(model, published)[0]

    def discard_switch(self, model: str) -> None:
        """Forget the model's pending switch: it was never published."""
        with self._transaction() as db:
            db.execute("DELETE FROM pending_switches WHERE model = ?", (model,))

    def pending_switch(self, model: str) -> PendingSwitch | None:
        with self._connect() as db:
            return self._pending(db, model, lock=False)

    def pending_switches(self) -> dict[str, PendingSwitch]:
        with self._connect() as db:
            rows = db.execute("SELECT model, action, version, previous FROM pending_switches").fetchall()
        return {row["model"]: PendingSwitch(**row) for row in rows}

    def repair(self, model: str, published: str | None) -> tuple[Deployment, list[Event]]:
        """Make the model's history agree with the `published` version (config.pbtxt): a pending switch completed
        or dropped, a disagreeing stack repaired. Returns the deployment and the events written (none: it agreed)."""
        with self._transaction() as db:
            pending = self._pending(db, model, lock=True)
            before = self._stack(db, model)
            stack, events, resolved = repaired(before, pending, published)
            if events:
                self._save(db, model, stack, events)
            if resolved:
                db.execute("DELETE FROM pending_switches WHERE model = ?", (model,))
        return Deployment(model, stack), events

    def history(self, model: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT action, version, previous, at FROM deployment_history WHERE model = ? "
                              "ORDER BY seq", (model,)).fetchall()
        return [dict(row) for row in rows]

    def _stack(self, db: _Session, model: str) -> Stack:
        row = db.execute(f"SELECT stack FROM deployments WHERE model = ?{self.dialect.for_update}",
                         (model,)).fetchone()
        return tuple(json.loads(row["stack"])) if row else ()

    def _pending(self, db: _Session, model: str, *, lock: bool) -> PendingSwitch | None:
        row = db.execute("SELECT model, action, version, previous FROM pending_switches WHERE model = ?"
                         f"{self.dialect.for_update if lock else ''}", (model,)).fetchone()
        return PendingSwitch(**row) if row else None

    def _save(self, db: _Session, model: str, stack: Stack, events: list[Event]) -> None:
        now = self.dialect.now
        db.execute(f"INSERT INTO deployments (model, stack, updated_at) VALUES (?, ?, {now}) "
                   "ON CONFLICT(model) DO UPDATE SET stack = excluded.stack, updated_at = excluded.updated_at",
                   (model, json.dumps(list(stack))))
        for event in events:
            db.execute(f"INSERT INTO deployment_history (model, action, version, previous, at) "
                       f"VALUES (?, ?, ?, ?, {now})", (model, event.action, event.version, event.previous))


    # -- API keys of the data plane (lomar_serve/common/api_keys.py) -----------------------------------------
    def create_key(self, grant: KeyGrant) -> KeyRecord:
        with self._transaction() as db:
            db.execute(f"INSERT INTO api_keys (id, name, scopes, digest, rate_per_minute, max_collections, created_at) "
                       f"VALUES (?, ?, ?, ?, ?, ?, {self.dialect.now})",
                       (grant.id, grant.name, json.dumps(list(grant.scopes)), grant.digest, grant.rate_per_minute,
                        grant.max_collections))
        return self.key(grant.id)

    def key(self, key_id: str) -> KeyRecord:
        with self._connect() as db:
            row = db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no API key {key_id!r}")
        return _key(row)

    def keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
        return [_key(row) for row in rows]

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke a key (once; revoking it again changes nothing)."""
        with self._transaction() as db:
            updated = db.execute(f"UPDATE api_keys SET revoked_at = {self.dialect.now} WHERE id = ? AND revoked_at "
                                 "IS NULL", (key_id,))
        if not updated.rowcount:
            self.key(key_id)  # KeyNotFound, or it was revoked already
        return self.key(key_id)

    def active_grants(self) -> list[KeyGrant]:
        """What the gateways must accept: every key not revoked, with its digest."""
        with self._connect() as db:
            rows = db.execute("SELECT id, name, scopes, digest, rate_per_minute, max_collections FROM api_keys "
                              "WHERE revoked_at IS NULL ORDER BY id").fetchall()
        return [KeyGrant(**{**row, "scopes": tuple(json.loads(row["scopes"]))}) for row in rows]


def _key(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{**row, "scopes": tuple(json.loads(row["scopes"]))})


def _connection_lost(error: Exception) -> bool:
    """A PostgreSQL error of the connection or the server rather than of the statement (the server shut down or
    restarted, the connection broke): the store is away, as when it cannot be reached, and a caller may try again."""
    import psycopg
    return isinstance(error, psycopg.OperationalError)


def _job(row: dict[str, Any]) -> JobRecord:
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["metrics"] = json.loads(values["metrics"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)
