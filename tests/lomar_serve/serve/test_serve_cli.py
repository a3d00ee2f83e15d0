"""`lomar serve`, `lomar gateway` and `lomar control-plane` refuse bad settings clearly, and a broken model does
not take serving down."""
from __future__ import annotations

from pathlib import Path

import time

import httpx
import pytest

from lomar_serve.cli import main as cli_main
from tests.lomar_serve.processes import launch_serve

REPO = Path(__file__).resolve().parents[3]


def test_missing_repository_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["serve", "--model-repository", str(tmp_path / "nowhere")]) == 2  # in-process: starts nothing
    assert "not a directory" in capsys.readouterr().err


def test_bad_port_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["serve", "--model-repository", str(tmp_path), "--port", "99999"]) == 2
    assert "port" in capsys.readouterr().err


def test_a_gateway_needs_a_triton_and_a_control_plane_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LOMAR_TRITON_URL", raising=False)
    monkeypatch.delenv("LOMAR_ADMIN_TOKEN", raising=False)
    assert cli_main(["gateway", "--model-repository", str(tmp_path)]) == 2  # never launches a Triton
    assert "--triton-url" in capsys.readouterr().err
    assert cli_main(["control-plane", "--model-repository", str(tmp_path), "--triton-url", "127.0.0.1:1"]) == 2
    assert "admin_token" in capsys.readouterr().err


@pytest.mark.e2e  # the `lomar serve` process starts Triton
def test_a_broken_model_neither_stops_triton_nor_fakes_readiness(tmp_path):
    """A model that cannot load leaves Triton and the gateway running (the others would serve); /readyz says which
    default model is missing."""
    (tmp_path / "repo" / "broken" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "no_such_backend"\n')
    served = launch_serve(["--model-repository", str(tmp_path / "repo")], tmp_path / "serve.log", {})
    try:
        deadline = time.monotonic() + 180
        while True:
            assert served.process.poll() is None, served.log_tail()
            try:
                response = httpx.get(f"{served.url}/readyz", timeout=5)
                if response.status_code == 503 and "default model" in response.json()["error"]["message"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.5)
    finally:
        served.process.terminate()
        assert served.process.wait(60) == 0
