"""Tiny data and model settings shared by the training tests (CPU, seconds per run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.data import write_synthetic

REPO = Path(__file__).resolve().parents[2]
# A 1-block, 64-d LoMaR: fast on CPU. 128 px images give an 8x8 patch grid = 4 window positions.
TINY_MODEL = ["--model", "lomar_tiny_patch16", "--model-option", "depth=1", "--model-option", "embed_dim=64",
              "--model-option", "num_heads=2"]
TINY_PRETRAIN = TINY_MODEL + ["--image-size", "128", "--num-windows", "2", "--num-workers", "0", "--no-progress",
                              "--device", "cpu", "--log-every", "1", "--save-every-epochs", "0"]


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """4 classes x 8 images, 64 px PNG, ImageFolder layout."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, classes=4, per_class=8, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def synth_split(tmp_path_factory) -> Path:
    """4 classes: train/ 12 per class, val/ 4 per class."""
    root = tmp_path_factory.mktemp("synth_split")
    write_synthetic(root / "train", classes=4, per_class=12, size=48, seed=0)
    write_synthetic(root / "val", classes=4, per_class=4, size=48, seed=1)
    return root


def read_metrics(output_dir: Path, split: str = "train") -> list[dict]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["split"] == split]


def module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_module(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m module args` to completion (killed on timeout), capturing output."""
    return subprocess.run(module_command(module, *args), cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)
