"""Settings: environment, validation, masking."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from lomar_serve.gateway.settings import Settings


def test_environment_and_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("LOMAR_PORT", "9001")
    monkeypatch.setenv("LOMAR_MAX_IMAGES", "4")
    settings = Settings(model_repository=tmp_path, triton_url="http://triton:8000/")
    assert settings.port == 9001 and settings.max_images == 4
    assert settings.triton_url == "triton:8000"
    assert Settings(model_repository=tmp_path, port=7).port == 7


@pytest.mark.parametrize("bad", [{"port": 70000}, {"max_images": 0}, {"triton_url": "no-port"},
                                 {"log_level": "loud"}, {"request_timeout_s": 0}])
def test_invalid_values_are_refused(bad, tmp_path):
    with pytest.raises(ValidationError):
        Settings(model_repository=tmp_path, **bad)


def test_missing_repository_refused_only_when_launching(tmp_path):
    with pytest.raises(ValidationError, match="not a directory"):
        Settings(model_repository=tmp_path / "missing")
    assert Settings(model_repository=tmp_path / "missing", triton_url="h:1").triton_url == "h:1"


def test_secrets_masked(tmp_path):
    url = "postgresql://lomar:s3cret-password@db/lomar"
    settings = Settings(model_repository=tmp_path, search_engine="pgvector", search_pg_url=url)
    text = settings.describe()
    assert "s3cret-password" not in text and "search_pg_url = ********" in text and "port = 8000" in text
    assert settings.search_pg_url.get_secret_value() == url
    with pytest.raises(ValidationError):
        settings.port = 1  # frozen
