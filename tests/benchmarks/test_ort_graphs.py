"""benchmarks/ort_graphs.py keeps working: a tiny run exports the four graphs, checks each against PyTorch and
prints one row of figures per batch size."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # runs the script as a user would, in its own process

REPO = Path(__file__).resolve().parents[2]


def test_tiny_run_prints_parity_and_a_row_per_batch():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ort_graphs.py"), "--model", "tiny", "--sizes", "64",
         "--batch-sizes", "1", "3", "--threads", "1", "--seconds", "0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parity = re.search(r"64 px, max \|embedding - PyTorch\|: (.*)", result.stdout)
    assert parity is not None, result.stdout
    diffs = dict(re.findall(r"(\w+ \w+) ([0-9.e+-]+)", parity.group(1)))
    assert set(diffs) == {"lomar standard", "lomar ort_fused", "vit standard", "vit ort_fused"}
    assert all(float(value) < 1e-4 for value in diffs.values()), diffs
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s+64\s+\d+\s", line)]
    assert [int(row[1]) for row in rows] == [1, 3]
    assert all(float(value) > 0 for row in rows for value in row[2:6])
