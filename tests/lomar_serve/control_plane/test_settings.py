"""How the control plane's settings are read and build the lifecycle."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.control_plane.settings import DEFAULT_CONTROL_PORT, ControlPlaneSettings

TOKEN = "control-plane-token-0123"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOMAR_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("LOMAR_TRITON_URLS", "http://triton-a:8000/, triton-b:8000")
    monkeypatch.setenv("LOMAR_DATA_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    settings = ControlPlaneSettings(model_repository=tmp_path)
    assert settings.triton_urls == ("triton-a:8000", "triton-b:8000")
    assert settings.data_roots == (tmp_path / "a", tmp_path / "b")
    assert (settings.control_host, settings.control_port) == ("127.0.0.1", DEFAULT_CONTROL_PORT)
    text = settings.describe()
    assert TOKEN not in text and "admin_token = ********" in text


@pytest.mark.parametrize("values, message", [
    ({"triton_urls": "t:1"}, "admin_token"),  # no token: no control plane
    ({"triton_urls": "t:1", "admin_token": "short"}, "at least 16"),
    ({"admin_token": TOKEN}, "triton_urls"),
    ({"admin_token": TOKEN, "triton_urls": "no-port"}, "host:port"),
])
def test_invalid_settings_are_refused(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ControlPlaneSettings(model_repository=tmp_path, **values)


def test_lifecycle_from_settings(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(model_repository=tmp_path, triton_urls="127.0.0.1:1,127.0.0.1:2",
                                    admin_token=TOKEN, data_roots=(tmp_path,), jobs_dir=tmp_path / "jobs",
                                    job_memory_gb=3.5)
    lifecycle = Lifecycle(settings)
    assert lifecycle.settings.job_memory_gb == 3.5
    assert lifecycle.auth.enabled and lifecycle.jobs_dir == (tmp_path / "jobs").resolve()
    assert [node.url for node in lifecycle.deployer.nodes] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert (tmp_path / "jobs" / "lifecycle.sqlite").is_file()
    assert TOKEN not in repr(lifecycle.settings) and TOKEN not in lifecycle.settings.describe()


def test_unusable_jobs_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        Lifecycle(ControlPlaneSettings(model_repository=tmp_path, triton_urls="127.0.0.1:1", admin_token=TOKEN,
                                             jobs_dir=tmp_path / "file" / "jobs"))
