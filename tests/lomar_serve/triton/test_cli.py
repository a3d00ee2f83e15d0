"""`lomar triton` and `lomar serve` launch Triton from their settings: the repository from LOMAR_MODEL_REPOSITORY as
every role reads it, the ports pinned by LOMAR_TRITON_*_PORT or flags (unit tests: nothing is started)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lomar_serve.cli import main as cli_main
from lomar_serve.common.settings import flag_overrides
from lomar_serve.serve.main import build_parser as serve_parser
from lomar_serve.serve.settings import ServeSettings
from lomar_serve.triton.cli import build_parser, launch_config
from lomar_serve.triton.settings import DEFAULT_TRITON_HTTP_PORT, TritonSettings


def test_lomar_triton_reads_the_repository_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("LOMAR_MODEL_REPOSITORY", str(tmp_path / "nowhere"))
    assert cli_main(["triton"]) == 2
    assert f"{tmp_path / 'nowhere'} is not a directory" in capsys.readouterr().err
    monkeypatch.setenv("LOMAR_MODEL_REPOSITORY", str(tmp_path))
    assert TritonSettings().model_repository == tmp_path


def test_lomar_triton_ports_from_variables_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOMAR_MODEL_REPOSITORY", str(tmp_path))
    assert launch_config(TritonSettings()).http_port == DEFAULT_TRITON_HTTP_PORT
    monkeypatch.setenv("LOMAR_TRITON_HTTP_PORT", "8123")
    monkeypatch.setenv("LOMAR_TRITON_GRPC_PORT", "8124")
    settings = TritonSettings()
    config = launch_config(settings, settings.triton_host)
    assert (config.http_port, config.grpc_port, config.metrics_port) == (8123, 8124, 0)
    flags = flag_overrides(build_parser().parse_args(["--http-port", "8200", "--host", "0.0.0.0"]), TritonSettings)
    settings = TritonSettings(**flags)
    assert (launch_config(settings, settings.triton_host).http_port, settings.triton_host) == (8200, "0.0.0.0")


def test_lomar_serve_pins_its_tritons_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOMAR_ADMIN_TOKEN", raising=False)
    assert launch_config(ServeSettings(model_repository=tmp_path)).http_port == 0  # free ports by default
    monkeypatch.setenv("LOMAR_TRITON_METRICS_PORT", "8302")
    args = serve_parser().parse_args(["--model-repository", str(tmp_path), "--triton-http-port", "8300",
                                      "--triton-grpc-port", "8301"])
    config = launch_config(ServeSettings(**flag_overrides(args, ServeSettings)))
    assert (config.host, config.http_port, config.grpc_port, config.metrics_port) == ("127.0.0.1", 8300, 8301, 8302)


def test_a_short_admin_token_is_refused_by_the_roles_that_hold_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys) -> None:
    monkeypatch.setenv("LOMAR_ADMIN_TOKEN", "short")
    for argv in (["serve", "--model-repository", str(tmp_path)], ["worker", "--jobs-dir", str(tmp_path)]):
        assert cli_main(argv) == 2, argv
        assert "at least 16 characters" in capsys.readouterr().err
