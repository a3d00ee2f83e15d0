"""benchmarks/attention_variants.py keeps working: its CPU quick mode times every variant that runs on the CPU,
records the diffs against the SDPA + bias reference, and the pretraining step in a child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # runs the script as a user would, in its own process

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_cpu_run_times_every_variant(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "attention_variants.py"), "--out", str(tmp_path),
         "--device", "cpu", "--quick"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "attention_variants.json").read_text())["rows"]
    assert not [row for row in rows if "error" in row], rows
    layer = {row["variant"]: row for row in rows if row["part"] == "layer" and row["size"] == 64}
    assert set(layer) == {"a sdpa_bias default", "c flex score_mod", "d timm no bias default"}
    assert layer["c flex score_mod"]["max_abs_diff"] < 1e-4  # exact: same outputs as the materialised bias
    assert layer["d timm no bias default"]["max_abs_diff"] > 1e-3  # no iRPE term: the check can tell
    models = {row["model"]: row for row in rows if row["part"] == "model" and row["size"] == 64}
    assert set(models) == {"lomar sdpa_bias", "lomar flex", "timm"}
    assert models["lomar flex"]["max_abs_diff"] < 1e-4
    pretrain = [row for row in rows if row["part"] == "pretrain"]
    assert [row["batch"] for row in pretrain] == [2, 4] and all(row["img_per_s"] > 0 for row in pretrain)
    assert all(row["img_per_s"] > 0 for row in rows)
    assert "flex score_mod" in result.stdout and (tmp_path / "attention_variants.txt").exists()


def test_nothing_starts_past_the_cap_and_the_skips_are_noted(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "attention_variants.py"), "--out", str(tmp_path),
         "--device", "cpu", "--quick", "--parts", "layer", "model", "--cap-s", "0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "attention_variants.json").read_text())
    assert report["rows"] == []
    assert any(note.startswith("layer 64: not measured") for note in report["notes"]), report["notes"]
    assert "not measured" in result.stdout
