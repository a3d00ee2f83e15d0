"""benchmarks/gpu_suite.py keeps working: its CPU smoke run (`--device cpu --quick`) writes every part, each with
figures or the reason it was skipped, as JSON and Markdown."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = ("attention", "pretraining", "inference", "data", "onnx", "serving")


@pytest.mark.e2e  # runs the script as a user would, in its own process
def test_quick_cpu_run_reports_every_part(tmp_path: Path):
    out = tmp_path / "suite"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--out", str(out), "--device", "cpu", "--quick"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["parts"]) == set(PARTS)
    for name, part in results["parts"].items():
        assert part["status"] in ("ok", "skipped"), (name, part)
        if part["status"] == "skipped":
            assert part["reason"], name
        else:
            figures = [row["img_per_s"] for row in part["rows"] if "img_per_s" in row]
            assert figures and all(value > 0 for value in figures), (name, part["rows"])
    kernel_left_out = "triton attention rows not measured: the fused kernel runs on CUDA only"
    for name in ("attention", "pretraining", "inference"):  # LoMaR's rows: the reference attention; a reason
        part = results["parts"][name]
        assert {row["attention"] for row in part["rows"] if row.get("model", "lomar") == "lomar"} == {"sdpa_bias"}
        assert any(note.startswith(kernel_left_out) for note in part["notes"]), (name, part["notes"])
    layers = results["parts"]["attention"]["rows"]
    assert {(row["tokens"], row["what"]) for row in layers} == {(17, "forward"), (17, "train step"),
                                                                (50, "forward"), (50, "train step")}
    assert all(row["max_abs_diff"] < 1e-5 for row in layers)  # the reference against itself
    assert results["parts"]["pretraining"]["summary"]["128"]["ratio"] > 0
    assert results["parts"]["inference"]["summary"]["64"]["ratio"] > 0
    assert results["parts"]["data"]["summary"]["cpu_workers_for_2500_img_s"] >= 1
    onnx_rows = {row["runtime"]: row for row in results["parts"]["onnx"]["rows"]}
    assert onnx_rows["onnxruntime CPUExecutionProvider fp32"]["max_abs_diff"] < 1e-3
    assert onnx_rows["onnxruntime CPUExecutionProvider fp16"]["top1_agreement"] is not None
    assert results["parts"]["onnx"]["summary"]["fp32_parity_met"] is True
    markdown = (out / "results.md").read_text()
    assert all(f"## {name}:" in markdown for name in PARTS)
    assert "pretraining" in result.stdout


def test_an_unknown_part_is_refused(tmp_path: Path, capsys):
    import benchmarks.gpu_suite as suite

    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--out", str(tmp_path), "--parts", "nope"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_failing_part_is_recorded_and_does_not_raise(tmp_path: Path, monkeypatch):
    import benchmarks.gpu_suite as suite
    from benchmarks.suite.common import Settings

    monkeypatch.setitem(suite.PARTS, "data", ("benchmarks.suite.no_such_part", 1.0))
    data = suite.run_in_process("data", Settings.for_device("cpu", quick=True), tmp_path, 10.0)
    assert data["status"] == "error" and "no_such_part" in data["error"]
