"""The SQLite lifecycle store: job records, state transitions, interruption, deployment stacks."""
from __future__ import annotations

from pathlib import Path

import pytest

from lomar_serve.lifecycle.errors import JobConflict, JobNotFound, NothingToRollBack
from lomar_serve.lifecycle.store import LifecycleStore


def new_job(store: LifecycleStore, job_id: str = "a1") -> None:
    store.create_job(job_id, "finetune", {"epochs": 2}, log_path=Path("/x/job.log"), output_dir=Path("/x/train"),
                     model_name="m")


def test_job_record_round_trip_and_updates(tmp_path: Path) -> None:
    store = LifecycleStore(tmp_path / "db" / "lifecycle.sqlite")
    new_job(store)
    record = store.get_job("a1")
    assert (record.state, record.stage, record.params, record.model_version) == ("queued", "", {"epochs": 2}, None)
    store.update_job("a1", stage="train", progress=0.5, metrics={"training": {"loss": 1.0}})
    store.update_job("a1", metrics={"verification": {"top1": 50.0}}, model_version="3")
    record = store.get_job("a1")
    assert record.progress == 0.5 and record.model_version == "3"
    assert record.metrics == {"training": {"loss": 1.0}, "verification": {"top1": 50.0}}
    with pytest.raises(ValueError):
        store.update_job("a1", state="succeeded")
    with pytest.raises(JobNotFound):
        store.get_job("nope")


def test_transitions_are_conditional(tmp_path: Path) -> None:
    store = LifecycleStore(tmp_path / "lifecycle.sqlite")
    new_job(store)
    assert store.transition("a1", ("queued",), "running").state == "running"
    with pytest.raises(JobConflict):
        store.transition("a1", ("queued",), "running")
    assert store.transition("a1", ("running",), "failed", "boom").message == "boom"
    assert store.get_job("a1").finished


def test_running_jobs_become_interrupted_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.sqlite"
    store = LifecycleStore(path)
    new_job(store, "a1")
    new_job(store, "b2")
    store.transition("a1", ("queued",), "running")
    reopened = LifecycleStore(path)  # a new gateway process
    assert reopened.interrupt_running("gateway died") == ["a1"]
    assert reopened.get_job("a1").state == "interrupted"
    assert reopened.get_job("a1").message == "gateway died"
    assert reopened.get_job("b2").state == "queued"
    assert [job.id for job in reopened.list_jobs(states=("queued",))] == ["b2"]
    assert [job.id for job in reopened.list_jobs()] == ["b2", "a1"]


def test_deployment_stack_deploy_and_rollback(tmp_path: Path) -> None:
    store = LifecycleStore(tmp_path / "lifecycle.sqlite")
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
    assert LifecycleStore(tmp_path / "lifecycle.sqlite").deployment("m").serving == "1"  # durable
    assert store.deployment("other").serving is None
