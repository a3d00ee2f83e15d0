"""`lomar serve` fails fast and clearly when it cannot serve."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lomar_serve.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lomar_serve.cli", "serve", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=180)


def test_missing_repository_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["serve", "--model-repository", str(tmp_path / "nowhere")]) == 2  # in-process: starts nothing
    assert "not a directory" in capsys.readouterr().err


def test_bad_port_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["serve", "--model-repository", str(tmp_path), "--port", "99999"]) == 2
    assert "port" in capsys.readouterr().err


@pytest.mark.e2e  # the `lomar serve` process starts Triton
def test_broken_model_exits_with_triton_errors(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "no_such_backend"\n')
    result = _serve("--model-repository", str(tmp_path), "--port", "0")
    assert result.returncode == 1
    assert "no_such_backend" in result.stderr and "giving up" in result.stderr
