"""The FlexAttention implementation of the iRPE attention gives the SDPA + bias outputs (eager model, and the whole
model compiled with no graph break), on a non-square grid with non-zero iRPE tables so a wrong bucket or axis shows."""
from __future__ import annotations

import pytest
import torch

from training.models import create_model
from training.models.vit import ATTENTION_IMPLEMENTATIONS


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", img_size=64, depth=2, num_classes=10).eval()
    for name, param in model.named_parameters():
        if name.endswith("lookup_table_weight"):
            torch.nn.init.normal_(param, std=0.5)
    return model


@pytest.mark.slow
def test_flex_matches_sdpa_bias_eager_and_compiled():
    model = _model()
    images = torch.randn(2, 3, 48, 80)  # 3 x 5 grid
    with torch.no_grad():
        reference = model(images)
        model.set_attention("flex")
        flex = model(images)
        compiled = torch.compile(model, fullgraph=True)(images)  # no graph break either
    torch.testing.assert_close(flex, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled, reference, atol=1e-4, rtol=1e-4)


def test_an_unknown_implementation_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="sdpa_bias"):
        model.set_attention("nope")
    assert ATTENTION_IMPLEMENTATIONS[0] == "auto"
    assert all(block.attn.implementation == "auto" for block in model.blocks)
