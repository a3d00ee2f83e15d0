"""torch.compile: the models compile with no graph break (fullgraph=True) and match eager, and so does a whole
training step (forward, backward, optimizer step). CPU inductor, micro models: about a minute in all.

The pretrainer samples its windows and masks inside forward; inductor's `fallback_random` makes compiled code draw
the same random numbers as eager, so both see the same windows for the same seed.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
import torch._inductor.config

from training.models import create_model
from training.optim import adamw, param_groups

# 1 block, 32-d, 2 heads; 64 px = a 4x4 patch grid; 2 windows of 2x2 patches, 1 hidden per window.
MICRO = dict(depth=1, embed_dim=32, num_heads=2, img_size=64)
PRETRAIN = dict(MICRO, window_size=2, num_windows=2, mask_ratio=0.5)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        yield
    torch._dynamo.reset()


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_pretrainer_forward_compiles_without_graph_break_and_matches_eager():
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", pretrain=True, **PRETRAIN)
    compiled = torch.compile(model, fullgraph=True)  # a graph break raises here
    x = images()
    torch.manual_seed(1)
    loss, pred, mask = model(x)
    torch.manual_seed(1)
    c_loss, c_pred, c_mask = compiled(x)
    assert torch.equal(mask, c_mask)  # same windows and masks drawn
    torch.testing.assert_close(c_pred, pred, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c_loss, loss, rtol=1e-4, atol=1e-5)


def test_classifier_forward_compiles_without_graph_break_and_matches_eager():
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", num_classes=5, **MICRO).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_training_step_compiled_matches_eager():
    """Two steps of forward + backward + AdamW: compiled model (backward compiled with it by AOTAutograd) and a
    compiled optimizer step (torch.compile as torch.optim documents it), against the same in eager mode, from the same weights and seeds."""
    torch.manual_seed(0)
    eager = create_model("lomar_tiny_patch16", pretrain=True, **PRETRAIN)
    twin = copy.deepcopy(eager)
    device = torch.device("cpu")
    # Adam's first steps move each weight by about lr * sign(grad): with the default eps, rounding-level gradient
    # differences near zero flip whole steps; a larger eps keeps the update a smooth function of the gradient
    eager_opt = adamw(param_groups(eager, 0.05), device, betas=(0.9, 0.95), eps=1e-3)
    twin_opt = adamw(param_groups(twin, 0.05), device, betas=(0.9, 0.95), eps=1e-3)
    for group in (*eager_opt.param_groups, *twin_opt.param_groups):
        group["lr"] = 1e-2
    compiled = torch.compile(twin, fullgraph=True)
    compiled_step = torch.compile(twin_opt.step)  # torch.optim inserts one graph break itself (_use_grad)
    x = images()
    losses = []
    for step in range(2):
        for model, optimizer, run_step in ((eager, eager_opt, eager_opt.step), (compiled, twin_opt, compiled_step)):
            torch.manual_seed(10 + step)
            loss = model(x)[0]
            loss.backward()
            run_step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses[3], losses[2], rtol=1e-4, atol=1e-5)
    assert not torch.equal(losses[2], losses[0])  # the step changed the weights
    for (name, p), q in zip(eager.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
