"""The serving version published in config.pbtxt: read, written atomically, kept by exports."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts.model_repository import CONFIG_FILE, DEFAULT_MODEL_NAMES
from contracts.triton_config import (ConfigError, parse_config, publish_serving_version, read_serving_version,
                                     serving_versions, set_serving_versions)

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    target = tmp_path / DEFAULT_MODEL_NAMES["classify"]
    shutil.copytree(REPOSITORY / target.name, target)
    return target


def test_builtin_models_publish_their_version():
    for name in DEFAULT_MODEL_NAMES.values():
        assert read_serving_version(REPOSITORY / name) == "1"


def test_publish_switches_the_serving_version_and_keeps_the_rest(model_dir: Path):
    before = parse_config((model_dir / CONFIG_FILE).read_text())
    publish_serving_version(model_dir, 7)
    after = parse_config((model_dir / CONFIG_FILE).read_text())
    assert read_serving_version(model_dir) == "7"
    assert serving_versions(after) == (7,)
    after.ClearField("version_policy")
    before.ClearField("version_policy")
    assert after == before


def test_latest_policy_and_missing_config_publish_nothing(model_dir: Path, tmp_path: Path):
    config = parse_config((model_dir / CONFIG_FILE).read_text())
    config.version_policy.latest.num_versions = 1
    assert serving_versions(config) is None
    assert read_serving_version(tmp_path / "absent") is None
    (model_dir / CONFIG_FILE).write_text("not: [a config")
    assert read_serving_version(model_dir) is None


def test_two_versions_are_not_one_serving_version(model_dir: Path):
    config = set_serving_versions(parse_config((model_dir / CONFIG_FILE).read_text()), (3, 2))
    assert serving_versions(config) == (2, 3)
    with pytest.raises(ConfigError):
        set_serving_versions(config, ())
