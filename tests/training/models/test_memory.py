"""The torch-free training-memory estimate: its parameter count is the built model's, its figures grow as the
formula says, and nothing in it needs torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from training.models import create_model, list_models
from training.models.architectures import model_config
from training.models.memory import GIB, parameter_count, training_memory


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("pretrain, overrides", [(False, {"num_classes": 7}), (True, {}),
                                                 (False, {"num_classes": 0, "global_pool": False})])
def test_parameter_count_is_the_built_models(name: str, pretrain: bool, overrides: dict) -> None:
    model = create_model(name, pretrain=pretrain, depth=2, **overrides)
    built = sum(p.numel() for key, p in model.named_parameters() if "rpe_k" not in key)  # iRPE tables left out
    assert parameter_count(model.config, pretrain) == built


def test_estimate_of_the_default_recipe_and_its_growth() -> None:
    base = model_config("lomar_base_patch16")
    estimate = training_memory(base, 64, 224, pretrain=False)
    assert 80e6 < estimate.parameters < 90e6  # ViT-B/16: 86 M
    assert estimate.state_bytes == estimate.parameters * 16  # fp32 weights, gradients, two AdamW moments
    assert 4 * GIB < estimate.total_bytes < 32 * GIB  # a base fine-tune at batch 64 fits a large accelerator
    doubled = training_memory(base, 128, 224, pretrain=False)
    assert doubled.activation_bytes == 2 * estimate.activation_bytes and doubled.state_bytes == estimate.state_bytes
    assert training_memory(base, 64, 224, pretrain=False, fp32=False).activation_bytes * 2 == \
        estimate.activation_bytes
    assert training_memory(base, 64, 224, False, ema=True).state_bytes == estimate.parameters * 20
    deep = training_memory(model_config("lomar_tiny_patch16", depth=100_000), 8, 112, pretrain=False)
    assert deep.total_bytes > 1000 * GIB and "GiB" in deep.describe()


@pytest.mark.e2e
def test_the_estimate_needs_no_torch() -> None:
    code = ("import sys; from training.models.memory import training_memory; "
            "from training.models.architectures import model_config; "
            "training_memory(model_config('lomar_base_patch16'), 8, 224, False); sys.exit('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
