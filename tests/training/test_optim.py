"""Parameter groups (no decay on norms/biases/tokens, layer-wise lr decay) and the warmup + cosine schedule."""
from __future__ import annotations

import pytest
import torch

from training.models import create_model
from training.optim import CosineSchedule, param_groups


def test_no_decay_on_norms_biases_and_tokens():
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=2)
    groups = param_groups(model, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {"cls_token", "mask_token", "blocks.0.attn.rpe_k.lookup_table_weight", "blocks.1.norm1.weight",
            "blocks.0.attn.qkv.bias"} <= no_decay
    assert "blocks.0.attn.qkv.weight" not in no_decay
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_decay_scales():
    model = create_model("lomar_tiny_patch16", depth=2, num_classes=3)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n, p in model.named_parameters() if any(p is q for q in g["params"])}
    assert scale["head.weight"] == 1.0
    assert scale["blocks.1.mlp.fc1.weight"] == 0.5
    assert scale["blocks.0.mlp.fc1.weight"] == 0.25
    assert scale["patch_embed.proj.weight"] == scale["cls_token"] == 0.125


def test_warmup_then_half_cosine():
    schedule = CosineSchedule(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
    assert schedule(0) == 0 and schedule(1) == pytest.approx(0.5) and schedule(2) == pytest.approx(1.0)
    assert schedule(6) == pytest.approx(0.55) and schedule(10) == pytest.approx(0.1)
    optimizer = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.5}])
    assert schedule.apply(optimizer, 1) == pytest.approx(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)
