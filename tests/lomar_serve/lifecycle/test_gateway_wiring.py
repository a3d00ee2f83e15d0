"""How the gateway's settings build the lifecycle."""
from __future__ import annotations

from pathlib import Path

import pytest

from lomar_serve.lifecycle.service import build_lifecycle
from lomar_serve.settings import Settings


def test_data_roots_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOMAR_DATA_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    settings = Settings(model_repository=tmp_path, triton_url="127.0.0.1:1")
    assert settings.data_roots == (tmp_path / "a", tmp_path / "b")


def test_build_lifecycle(tmp_path: Path) -> None:
    settings = Settings(model_repository=tmp_path, triton_url="127.0.0.1:1", admin_token="tok-123456",
                        data_roots=(tmp_path,), jobs_dir=tmp_path / "jobs")
    lifecycle = build_lifecycle(settings)
    assert lifecycle is not None and lifecycle.auth.enabled and lifecycle.jobs_dir == (tmp_path / "jobs").resolve()
    assert (tmp_path / "jobs" / "lifecycle.sqlite").is_file()
    assert "tok-123456" not in repr(lifecycle.config)


def test_unusable_jobs_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    unusable = {"model_repository": tmp_path, "triton_url": "127.0.0.1:1", "jobs_dir": tmp_path / "file" / "jobs"}
    assert build_lifecycle(Settings(**unusable)) is None  # admin disabled anyway: serve without it
    with pytest.raises(OSError):
        build_lifecycle(Settings(**unusable, admin_token="tok-123456"))
