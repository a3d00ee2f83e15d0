"""The fused iRPE kernel's test cases, run outside pytest's process: Triton's interpreter must be chosen before
Triton is first imported (TRITON_INTERPRET=1 decides, at decoration time, what every @triton.jit function of
Triton's own library and of irpe_triton.py becomes), so test_irpe_triton.py starts this file with the variable set:

    TRITON_INTERPRET=1 PYTHONPATH=. python tests/training/models/irpe_triton_cases.py OUT.pt

It saves each case's inputs and the kernel's outputs and gradients; the test computes the reference from the
same inputs. On CUDA the test imports `kernel_case` and runs the same cases on the device instead.
"""
from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

RPE_STD = 0.1  # non-zero iRPE tables (zero at init), so a wrong bucket shows


@dataclass(frozen=True)
class Case:
    height: int
    width: int
    cls_token: bool
    dtype: torch.dtype
    batch: int = 2
    heads: int = 2
    head_dim: int = 64

    @property
    def name(self) -> str:
        cls = "cls" if self.cls_token else "nocls"
        return f"L{self.length}-{self.height}x{self.width}-{cls}-{str(self.dtype).removeprefix('torch.')}"

    @property
    def length(self) -> int:
        return self.height * self.width + self.cls_token


# 224 and 448 px at patch 16 (14x14, 28x28 grids) and a 7x7 pretraining window, with and without the class token
# (odd lengths 197/785/50 and 196/784/49: every tail tile masked), in fp32 and bf16; an 8x8 grid without class
# token has no tail tile (64 = one full tile of 64)
CASES = tuple(
    Case(h, w, cls, dtype, *((1, 1) if h * w > 400 else (2, 2)))  # 448: one image, one head (interpreter time)
    for dtype in (torch.float32, torch.bfloat16)
    for h, w in ((14, 14), (28, 28), (7, 7))
    for cls in (True, False)
) + (Case(8, 8, False, torch.float32),)


def buckets_of(case: Case) -> torch.Tensor:
    """The model's bucket table for the case's grid; without a class token its patch block."""
    from training.models.irpe import bucket_table

    table = bucket_table(case.height, case.width)
    return table if case.cls_token else table[1:, 1:]


def case_inputs(case: Case, device: str) -> dict[str, torch.Tensor]:
    """q, k, v as the model makes them (views of one qkv projection, so the kernel sees the model's strides), the
    iRPE table W (hd, 50) in fp32 and an upstream gradient for the output."""
    generator = torch.Generator().manual_seed(zlib.crc32(case.name.encode()))
    shape = (case.batch, case.length, 3, case.heads, case.head_dim)
    qkv = torch.randn(shape, generator=generator).to(device, case.dtype)
    table = torch.randn(case.head_dim, 50, generator=generator) * RPE_STD
    grad = torch.randn(case.batch, case.heads, case.length, case.head_dim, generator=generator)
    return {"qkv": qkv, "table": table.to(device), "grad": grad.to(device, case.dtype)}


def split_heads(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L, 3, H, hd) -> q, k, v each (B, H, L, hd), views like Attention.qkv_heads."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    return q, k, v


def kernel_case(case: Case, device: str) -> dict[str, torch.Tensor]:
    """Inputs, then the fused kernel's output and the gradients of q, k, v and W (all on the CPU)."""
    from training.models.irpe_triton import irpe_attention

    inputs = case_inputs(case, device)
    qkv = inputs["qkv"].clone().requires_grad_()
    table = inputs["table"].clone().requires_grad_()
    q, k, v = split_heads(qkv)
    out = irpe_attention(q, k, v, q @ table.to(q.dtype), buckets_of(case).to(device))
    out.backward(inputs["grad"])
    dq, dk, dv = split_heads(qkv.grad)
    results = {"out": out, "dq": dq, "dk": dk, "dv": dv, "dtable": table.grad}
    return {name: value.detach().cpu() for name, value in {**inputs, **results}.items()}


def model_case() -> dict[str, torch.Tensor]:
    """A tiny LoMaR classifier (3 x 5 grid plus class token) with the triton implementation forced and with
    sdpa_bias: both outputs, and the gradients of every parameter for the same loss."""
    from training.models import create_model

    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", img_size=64, depth=2, num_classes=10)
    for name, param in model.named_parameters():
        if name.endswith("lookup_table_weight"):
            torch.nn.init.normal_(param, std=RPE_STD)
    images = torch.randn(2, 3, 48, 80)
    results = {}
    for implementation in ("triton", "sdpa_bias"):
        model.zero_grad()
        model.set_attention(implementation)
        out = model(images)
        out.square().sum().backward()
        results[f"{implementation}/out"] = out.detach()
        results.update({f"{implementation}/grad/{name}": param.grad.clone()
                        for name, param in model.named_parameters()})
    return results


def main(argv: list[str]) -> int:
    results = {case.name: kernel_case(case, "cpu") for case in CASES}
    results["model"] = model_case()
    torch.save(results, Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
