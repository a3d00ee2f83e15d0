"""The serving version published in config.pbtxt: read, written atomically, kept by exports."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts.model_repository import CONFIG_FILE, DEFAULT_MODEL_NAMES
from contracts.triton_config import (ConfigError, config_from_json, parse_config, publish_serving_version,
                                     read_serving_version, runs_on, serving_versions, set_serving_versions)

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


PYTHON_MODEL = 'name: "m" backend: "python" max_batch_size: 8 '


@pytest.mark.parametrize("text, expected", [
    (PYTHON_MODEL + 'instance_group [ { kind: KIND_CPU } ]', ("CPUExecutionProvider",)),
    (PYTHON_MODEL + 'instance_group [ { kind: KIND_GPU } ]', ("CUDAExecutionProvider",)),
    (PYTHON_MODEL + 'instance_group [ { kind: KIND_CPU } ] '
                    'parameters { key: "execution_provider" value { string_value: "cuda" } }',
     ("CUDAExecutionProvider",)),
    (PYTHON_MODEL + 'instance_group [ { kind: KIND_GPU }, { kind: KIND_CPU }, { kind: KIND_GPU } ]',
     ("CUDAExecutionProvider", "CPUExecutionProvider")),
    ('name: "m" backend: "onnxruntime" instance_group [ { kind: KIND_GPU } ]', ("CUDAExecutionProvider",)),
    ('name: "m" backend: "onnxruntime" instance_group [ { kind: KIND_GPU } ] optimization { execution_accelerators '
     '{ gpu_execution_accelerator [ { name: "tensorrt" } ] } }',
     ("TensorrtExecutionProvider", "CUDAExecutionProvider")),
    ('name: "m" backend: "onnxruntime" instance_group [ { kind: KIND_CPU } ]', ("CPUExecutionProvider",)),
    ('name: "m" platform: "tensorrt_plan" instance_group [ { kind: KIND_GPU } ]', ("TensorRT",)),
    ('name: "m" backend: "pytorch" instance_group [ { kind: KIND_GPU } ]', ()),  # not a backend export writes
    (PYTHON_MODEL, ()),  # no instance group yet: Triton fills it in at load
])
def test_runs_on_follows_backend_instance_kind_and_setting(text: str, expected: tuple[str, ...]):
    assert runs_on(parse_config(text)) == expected


def test_config_from_json_reads_tritons_answer():
    """The JSON form of the model-configuration API (as Triton 2.51 answers it, with fields tritonclient's schema may
    not know) gives the same config as the text."""
    answer = {"name": "m", "backend": "python", "max_batch_size": 8, "runtime": "", "metric_tags": {},
              "instance_group": [{"name": "m_0", "kind": "KIND_GPU", "count": 2, "gpus": [0], "passive": False}],
              "parameters": {"execution_provider": {"string_value": "auto"}}, "a_field_of_a_later_triton": 1}
    config = config_from_json(answer)
    assert config.instance_group[0].count == 2 and runs_on(config) == ("CUDAExecutionProvider",)
    with pytest.raises(ConfigError):
        config_from_json({"max_batch_size": "many"})
