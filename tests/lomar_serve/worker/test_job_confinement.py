"""A retrain job reads no file outside its data roots, even through a symlink inside a root (e2e: it starts the
real training and verification programs with the command lines the job's stages run; training stops while listing
the images, before any model is built). How a failing stage fails its job (its last error line becomes the job's
message) is test_jobs.py's subject."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobRequest
from lomar_serve.worker.stages import training_command, verification_command
from tests.lomar_serve.tiny_models import TINY_MODEL, TINY_OPTIONS, synthetic_set

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_symlink_leading_out_of_the_data_root_stops_the_job_stages(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    synthetic_set(root / "set", per_class=2, val_per_class=1)
    synthetic_set(outside, per_class=2, val_per_class=1, seed=3)
    request = JobRequest(data_dir="set", epochs=1, options={**TINY_OPTIONS, "batch_size": 2}, **TINY_MODEL)
    plan = request.plan(DataRoots.of([root]), tmp_path / "jobs")
    paths = JobFiles(tmp_path / "jobs" / "j1")
    # after the submission (which refuses a class folder leading out): a training class folder and a validation
    # image that lead out of the root; the stages check every path again as they list them
    (root / "set" / "train" / "class_000_circle").rename(tmp_path / "moved")
    (root / "set" / "train" / "class_000_circle").symlink_to(outside / "train" / "class_000_circle",
                                                             target_is_directory=True)
    (root / "set" / "val" / "class_001_square" / "leak.png").symlink_to(outside / "val" / "class_001_square" /
                                                                        "00000.png")

    training = subprocess.run(training_command(plan, paths), capture_output=True, text=True, timeout=150)
    assert training.returncode == 2, training.stderr[-2000:]
    assert "error: class folder class_000_circle under" in training.stderr and \
        "train resolves outside the data roots" in training.stderr, training.stderr[-2000:]
    assert not any(paths.train.glob("checkpoint-*.pth"))

    verification = subprocess.run(verification_command(plan, paths, tmp_path / "repo", "1", None),
                                  capture_output=True, text=True, timeout=60)
    assert verification.returncode == 2 and "verify: image class_001_square/leak.png under" in \
        verification.stderr, verification.stderr[-2000:]
    assert not paths.verification.exists()
