"""Versioned, atomic writes into a Triton model repository."""
from __future__ import annotations

from pathlib import Path

import pytest

from export.errors import ExportError
from contracts.model_repository import CONFIG_FILE, LABELS_FILE, versions
from contracts.triton_config import LOCK_FILE, publish_serving_version, read_serving_version, render_config
from export.repository import next_version, publish
from export.triton_config import TensorConfig, TritonModelConfig, parse_pbtxt


def config(flavour: str = "python", classes: int = 2) -> TritonModelConfig:
    return TritonModelConfig(
        name="m", flavour=flavour, max_batch_size=4, inputs=(TensorConfig("image", "TYPE_UINT8", (3, 32, 32)),),
        outputs=(TensorConfig("logits", "TYPE_FP32", (classes,), label_filename=LABELS_FILE),))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"onnx bytes")
    (source / "model_card.json").write_text("{}")
    return {name: source / name for name in ("model.onnx", "model_card.json")}


def test_versions_count_up_and_leave_no_staging(tmp_path, files):
    repo = tmp_path / "repo"
    first = publish(repo, config(), files, labels=["a", "b"])
    second = publish(repo, config(), files, labels=["a", "b"])
    assert (first.version, second.version) == (1, 2)
    model_dir = repo / "m"
    assert sorted(p.name for p in model_dir.iterdir()) == [LOCK_FILE, "1", "2", CONFIG_FILE, LABELS_FILE]
    assert (second.path / "model.onnx").read_bytes() == b"onnx bytes"
    assert (model_dir / LABELS_FILE).read_text() == "a\nb\n"
    assert parse_pbtxt((model_dir / CONFIG_FILE).read_text()).name == "m"


def test_next_version_follows_the_highest_number(tmp_path):
    for name in ("1", "3", "notes", ".staging-x"):
        (tmp_path / name).mkdir()
    assert versions(tmp_path) == [1, 3] and next_version(tmp_path) == 4
    assert next_version(tmp_path / "missing") == 1


def test_new_classes_update_config_and_labels(tmp_path, files):
    repo = tmp_path / "repo"
    publish(repo, config(classes=2), files, labels=["a", "b"])
    publish(repo, config(classes=3), files, labels=["a", "b", "c"])
    assert list(parse_pbtxt((repo / "m" / CONFIG_FILE).read_text()).output[0].dims) == [3]
    assert (repo / "m" / LABELS_FILE).read_text() == "a\nb\nc\n"


def test_another_backend_under_the_same_name_is_refused(tmp_path, files):
    repo = tmp_path / "repo"
    publish(repo, config("python"), files)
    before = (repo / "m" / CONFIG_FILE).read_text()
    with pytest.raises(ExportError, match="another --name"):
        publish(repo, config("onnxruntime"), files)
    assert versions(repo / "m") == [1] and (repo / "m" / CONFIG_FILE).read_text() == before


def test_only_the_first_version_is_published_as_serving(tmp_path, files):
    """A new version serves only after a deploy (contracts/triton_config.py); a legacy `latest` config keeps
    serving the newest version it had."""
    repo = tmp_path / "repo"
    publish(repo, config(), files)
    publish(repo, config(), files)
    assert read_serving_version(repo / "m") == "1"
    publish_serving_version(repo / "m", 2)
    publish(repo, config(), files)
    assert read_serving_version(repo / "m") == "2"
    legacy = parse_pbtxt((repo / "m" / CONFIG_FILE).read_text())
    legacy.version_policy.latest.num_versions = 1
    (repo / "m" / CONFIG_FILE).write_text(render_config(legacy))
    publish(repo, config(), files)
    assert read_serving_version(repo / "m") == "3"  # the newest before this export
