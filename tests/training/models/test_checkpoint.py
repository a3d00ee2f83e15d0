"""Checkpoint round trip, and clear errors for wrong keys, truncated files and malicious pickles."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from training.errors import CheckpointError
from training.models import create_model, load_classifier, load_pretrained, save_checkpoint


def test_classifier_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", depth=2, num_classes=7, img_size=96).eval()
    save_checkpoint(tmp_path / "clf.pth", model, epoch=3)
    loaded = load_classifier(tmp_path / "clf.pth")
    assert loaded.config == model.config
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_pretrainer_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("lomar_small_patch16", pretrain=True, depth=1, mask_ratio=0.5).eval()
    save_checkpoint(tmp_path / "pre.pth", model)
    loaded = load_pretrained(tmp_path / "pre.pth")
    assert loaded.config.mask_ratio == 0.5
    x = torch.randn(1, 3, 128, 128)
    windows, mask = model.sample(x)
    with torch.no_grad():
        assert torch.equal(model.reconstruct_windows(x, windows, mask), loaded.reconstruct_windows(x, windows, mask))


def test_official_pretrained_loads_as_classifier_is_refused(official_dir):
    with pytest.raises(CheckpointError, match="pretrained checkpoint.*unexpected keys.*mask_token"):
        load_classifier(official_dir / "official_pretrained.pth")


def test_wrong_keys_are_named(tmp_path):
    model = create_model("lomar_tiny_patch16", depth=1, num_classes=2)
    state = model.state_dict()
    state["blocks.0.extra.weight"] = torch.zeros(1)
    del state["blocks.0.attn.proj.bias"]
    torch.save({"model": state, "model_args": model.config.to_dict()}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_classifier(tmp_path / "bad.pth")
    assert "blocks.0.attn.proj.bias" in str(info.value) and "blocks.0.extra.weight" in str(info.value)


def test_truncated_file_is_refused(tmp_path, official_dir):
    data = (official_dir / "official_finetuned.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_classifier(tmp_path / "cut.pth")


def test_garbage_file_is_called_corrupt_not_unsafe(tmp_path):
    (tmp_path / "noise.pth").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_classifier(tmp_path / "noise.pth")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope.pth")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "payload": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="allow-list.*system"):
        load_classifier(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "raw.pth").write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(CheckpointError):
        load_pretrained(tmp_path / "raw.pth")
    assert not (tmp_path / "pwned").exists()
