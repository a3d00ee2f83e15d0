"""A retrain job reads no file outside its data roots, even through a symlink inside a root (e2e: it starts the
real training process, which stops while listing the images, before any model is built)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lomar_serve.lifecycle.jobs import JobRunner, JobSettings
from lomar_serve.lifecycle.paths import DataRoots
from lomar_serve.lifecycle.spec import JobRequest
from lomar_serve.lifecycle.store import LifecycleStore
from tests.lomar_serve.lifecycle.conftest import TINY_MODEL, TINY_OPTIONS, synthetic_set

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_symlink_leading_out_of_the_data_root_fails_the_job(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    synthetic_set(root / "set", per_class=2, val_per_class=1)
    synthetic_set(outside, per_class=2, val_per_class=1, seed=3)
    # the request's data_dir is inside the root; one of its class folders leads out of it
    (root / "set" / "train" / "class_000_circle").rename(tmp_path / "moved")
    (root / "set" / "train" / "class_000_circle").symlink_to(outside / "train" / "class_000_circle",
                                                             target_is_directory=True)
    request = JobRequest(data_dir="set", epochs=1, options={**TINY_OPTIONS, "batch_size": 2}, **TINY_MODEL)
    plan = request.plan(DataRoots.of([root]), tmp_path / "jobs")
    runner = JobRunner(LifecycleStore(tmp_path / "jobs" / "lifecycle.sqlite"),
                       JobSettings(jobs_dir=tmp_path / "jobs", model_repository=tmp_path / "repo",
                                   poll_interval_s=0.2))
    (tmp_path / "repo").mkdir()
    runner.start()
    try:
        job = runner.submit(plan)
        deadline = time.monotonic() + 150
        while (record := runner.get(job.id)).state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runner.stop()
    assert record.state == "failed" and record.stage == "train", runner.describe(job.id)
    assert "image 00000.png under" in record.message and "class_000_circle resolves outside the data roots" \
        in record.message, record.message
    assert not any(Path(record.output_dir).glob("checkpoint-*.pth"))
