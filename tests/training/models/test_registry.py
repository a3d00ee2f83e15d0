"""Every registered model builds, runs forward and backward at two resolutions, and trains every parameter."""
from __future__ import annotations

import pytest
import torch

from training.errors import ConfigError
from training.models import create_model, list_models

SMALL = dict(depth=2)  # keep CPU tests fast; width, heads and patch size stay those of the registered name


def resolutions(patch: int) -> list[int]:
    return [patch * 7, patch * 9]


@pytest.mark.parametrize("name", list_models())
def test_classifier_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, drop_path_rate=0.1, **SMALL)
    for size in resolutions(model.config.patch_size):
        model.zero_grad()
        x = torch.randn(2, 3, size, size)
        logits = model(x)
        assert logits.shape == (2, 5)
        assert model.forward_features(x).shape == (2, model.config.embed_dim)
        logits.logsumexp(-1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"no gradient for {missing} at {size}px"


@pytest.mark.parametrize("name", list_models())
def test_pretrainer_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, pretrain=True, **SMALL)
    p, k = model.config.patch_size, model.config.window_size
    for size in (p * 8, p * 10):  # the grid must fit 4 distinct 7x7 windows
        model.zero_grad()
        loss, pred, mask = model(torch.randn(2, 3, size, size))
        assert pred.shape == (2, 4, k * k, p * p * 3)
        assert mask.shape == (2, 4, k * k) and (mask.sum(-1) == model.config.num_masked).all()
        assert torch.isfinite(loss)
        loss.backward()
        missing = [n for n, prm in model.named_parameters() if prm.grad is None or not prm.grad.abs().sum() > 0]
        assert not missing, f"no gradient for {missing} at {size}px"


def test_global_pool_off_uses_class_token_and_norm():
    model = create_model("lomar_tiny_patch16", global_pool=False, num_classes=3, depth=1)
    keys = set(model.state_dict())
    assert "norm.weight" in keys and "fc_norm.weight" not in keys
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_official_key_layout():
    classifier = set(create_model("lomar_tiny_patch16", depth=1).state_dict())
    pretrainer = set(create_model("lomar_tiny_patch16", pretrain=True, depth=1).state_dict())
    encoder = {"cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
               "blocks.0.attn.rpe_k.lookup_table_weight", "blocks.0.attn.qkv.bias", "blocks.0.mlp.fc2.weight"}
    assert encoder <= classifier and encoder <= pretrainer
    assert {"fc_norm.weight", "head.weight"} <= classifier and "mask_token" not in classifier
    assert {"mask_token", "norm.weight", "encoder_pred.weight"} <= pretrainer


def test_resolution_must_be_a_multiple_of_the_patch():
    model = create_model("lomar_tiny_patch16", depth=1)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 100, 112))


def test_unknown_name_and_option_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("lomar_giant")
    with pytest.raises(ConfigError, match="unknown model option"):
        create_model("lomar_tiny_patch16", colour="blue")
    with pytest.raises(ConfigError, match="not divisible"):
        create_model("lomar_tiny_patch16", num_heads=5)
