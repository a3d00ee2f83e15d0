"""The fused Triton iRPE kernel (training/models/irpe_triton.py) against the SDPA + bias reference: the output and
the gradients of q, k, v and W at 224 and 448 px and in a 7x7 pretraining window, with and without class token
(odd lengths, so every tail tile is masked), in fp32 and bf16; then the model with the kernel forced, and which
implementation "auto" picks.

Without a GPU the kernel runs in Triton's interpreter, in a child process (irpe_triton_cases.py says why); the
reference is computed here, in fp32, from the inputs the child saved. With a GPU the same cases run on it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.training.models.irpe_triton_cases import CASES, Case, buckets_of, kernel_case, split_heads
from training.models import create_model
from training.models.vit import select_attention

REPO = Path(__file__).resolve().parents[3]
CASES_SCRIPT = Path(__file__).with_name("irpe_triton_cases.py")
CUDA = torch.cuda.is_available()
# largest |kernel - reference| over the largest |reference|: fp32 agrees to rounding; bf16 to a few bf16 steps
# (2**-8), as far as the SDPA path run in bf16 is from the same fp32 reference
TOLERANCE = {torch.float32: 5e-6, torch.bfloat16: 2e-2}


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every case (and the model check) through Triton's interpreter, in a child process: ~25 s of CPU, most of
    it the 448 px cases."""
    out = tmp_path_factory.mktemp("irpe_triton") / "cases.pt"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(CASES_SCRIPT), str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(out)


def reference(data: dict[str, torch.Tensor], buckets: torch.Tensor) -> dict[str, torch.Tensor]:
    """The SDPA path in fp32 (materialised bias, gather of q.W by the bucket table) on the case's inputs."""
    qkv = data["qkv"].float().requires_grad_()
    table = data["table"].clone().requires_grad_()
    q, k, v = split_heads(qkv)
    per_bucket = q @ table  # (B, H, L, 50)
    bias = per_bucket.gather(-1, buckets.expand(q.shape[0], q.shape[1], -1, -1))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out.backward(data["grad"].float())
    dq, dk, dv = split_heads(qkv.grad)
    return {"out": out.detach(), "dq": dq, "dk": dk, "dv": dv, "dtable": table.grad}


@pytest.mark.e2e  # starts the interpreter's process
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_kernel_matches_the_sdpa_reference(case: Case, interpreted: dict):
    data = interpreted[case.name]
    expected = reference(data, buckets_of(case))
    errors = {name: relative_error(data[name], expected[name]) for name in expected}
    assert max(errors.values()) <= TOLERANCE[case.dtype], errors


@pytest.mark.e2e
def test_the_comparison_sees_a_wrong_bucket(interpreted: dict):
    """The same check fails for a kernel that would read the bucket table transposed (or any wrong bucket)."""
    case = next(case for case in CASES if case.length == 50 and case.dtype == torch.float32)
    data = interpreted[case.name]
    wrong = reference(data, buckets_of(case).T.contiguous())
    assert relative_error(data["out"], wrong["out"]) > 100 * TOLERANCE[case.dtype]
    assert relative_error(data["dtable"], wrong["dtable"]) > 100 * TOLERANCE[case.dtype]


@pytest.mark.e2e
def test_the_model_with_the_kernel_forced_matches_sdpa_bias(interpreted: dict):
    """A tiny classifier on a 3 x 5 grid plus class token: the same logits and parameter gradients."""
    results = interpreted["model"]
    names = [key.removeprefix("sdpa_bias/") for key in results if key.startswith("sdpa_bias/")]
    assert "grad/blocks.1.attn.rpe_k.lookup_table_weight" in names
    for name in names:
        torch.testing.assert_close(results[f"triton/{name}"], results[f"sdpa_bias/{name}"], atol=1e-5, rtol=1e-4,
                                   msg=name)


def test_auto_takes_sdpa_bias_on_the_cpu_and_forced_names_pass():
    q = torch.randn(1, 2, 5, 64)
    assert select_attention("auto", q) == "sdpa_bias"
    assert [select_attention(name, q) for name in ("sdpa_bias", "flex", "triton")] == ["sdpa_bias", "flex", "triton"]


def test_the_kernel_forced_on_the_cpu_is_refused_with_a_reason():
    model = create_model("lomar_tiny_patch16", img_size=32, depth=1, num_classes=2).eval()
    model.set_attention("triton")
    with pytest.raises(ValueError, match="runs on CUDA"):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_kernel_matches_the_sdpa_reference_on_cuda(case: Case):
    data = kernel_case(case, "cuda")
    expected = reference(data, buckets_of(case))
    errors = {name: relative_error(data[name], expected[name]) for name in expected}
    assert max(errors.values()) <= TOLERANCE[case.dtype], errors


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_auto_takes_the_kernel_on_cuda_eager_and_compiled():
    """ViT-B/16 shapes at 224 under bf16 autocast: "auto" runs the kernel, and its logits match sdpa_bias."""
    torch.manual_seed(0)
    model = create_model("lomar_base_patch16", img_size=224, depth=2, num_classes=10).cuda().eval()
    for name, param in model.named_parameters():
        if name.endswith("lookup_table_weight"):
            torch.nn.init.normal_(param, std=0.1)
    images = torch.randn(4, 3, 224, 224, device="cuda")
    q = torch.randn(4, 12, 197, 64, device="cuda", dtype=torch.bfloat16)
    assert select_attention("auto", q) == "triton"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model(images)
        compiled = torch.compile(model, fullgraph=True)(images)
        model.set_attention("sdpa_bias")
        expected = model(images)
    torch.testing.assert_close(fused.float(), expected.float(), atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(compiled.float(), expected.float(), atol=3e-2, rtol=3e-2)
