"""(f) One LoMaR attention layer (qkv, iRPE term, attention, proj) at ViT shapes, each implementation beside the
other: the fused Triton kernel (training/models/irpe_triton.py) and SDPA with the materialised (B, H, L, L) bias,
the reference. Forward (inference mode) and a training step (forward + backward to the layer's parameters and
input), eager and compiled, bf16 autocast on CUDA, in images per second; every row carries max |out - reference|
of its output.

Shapes: 448 px (28 x 28 patches + class token, 785 tokens) batch 64, 224 px (197 tokens) batch 256, and the
pretraining step's windows (7 x 7 + class token, 50 tokens), 4 sequences per image of a batch of 128. The
whole-model rows of each implementation are in the inference and pretraining parts (their `attention` column)."""
from __future__ import annotations

from typing import Callable

import torch

from benchmarks.model_throughput import images_per_second, synchronize
from benchmarks.suite.common import (
    REFERENCE_ATTENTION, Recorder, Settings, attention_note, error_text, release,
)
from training.models.architectures import model_config
from training.models.irpe import bucket_table
from training.models.vit import Attention

RPE_STD = 0.1  # non-zero iRPE table (zero at init), so a wrong term shows in the diff


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def layer_step(attn: torch.nn.Module, x: torch.Tensor, buckets: torch.Tensor, grid: int, device: torch.device,
               train: bool) -> Callable[[], torch.Tensor]:
    """One call of the layer: inference-mode forward, or forward + backward of sum(out * g)."""
    # the output's dtype: bf16 under autocast on CUDA (backward refuses a gradient of another dtype)
    grad = torch.randn_like(x, dtype=torch.bfloat16 if device.type == "cuda" else x.dtype) if train else None

    def step() -> torch.Tensor:
        if not train:
            with torch.inference_mode(), autocast(device):
                return attn(x, buckets, grid)
        with autocast(device):
            out = attn(x, buckets, grid)
        out.backward(grad)
        return out.detach()

    return step


def run(settings: Settings, record: Recorder) -> None:
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    config = model_config(f"lomar_{settings.model}_patch16")
    attention_note(settings, record)
    for compiled in settings.compile_modes:
        for grid, images, per_image in settings.layer_cases:
            for train in (False, True):
                measure_case(settings, record, device, config.embed_dim, config.num_heads, grid, images, per_image,
                             compiled, train)


def measure_case(settings: Settings, record: Recorder, device: torch.device, dim: int, heads: int, grid: int,
                 images: int, per_image: int, compiled: bool, train: bool) -> None:
    """Every implementation on the same layer weights and input; the reference's forward output is the diff's."""
    torch.manual_seed(0)
    attn = Attention(dim, heads).to(device)
    torch.nn.init.normal_(attn.rpe_k.lookup_table_weight, std=RPE_STD)
    x = torch.randn(images * per_image, 1 + grid * grid, dim, device=device, requires_grad=train)
    buckets = bucket_table(grid, grid).to(device)
    with torch.inference_mode(), autocast(device):
        attn.implementation = REFERENCE_ATTENTION
        reference = attn(x, buckets, grid).float()
    mode = "compiled" if compiled else "eager"
    for implementation in settings.attention:
        row = dict(what="train step" if train else "forward", tokens=1 + grid * grid, batch=images,
                   sequences=images * per_image, mode=mode, attention=implementation)
        if record.time_left() <= 0:
            record.note(f"layer {row}: not measured, part time cap reached")
            continue
        try:
            attn.implementation = implementation
            runner = torch.compile(attn) if compiled else attn
            step = layer_step(runner, x, buckets, grid, device, train)
            out = step()  # compiles, picks kernels
            synchronize(device)
            value = images_per_second(step, images, device, settings.warmup, settings.steps)
            record.add(**row, img_per_s=round(value, 1), ms=round(1000 * images / value, 3),
                       max_abs_diff=float((out.float() - reference).abs().max()))
        except Exception as exc:  # an implementation that cannot run here is a result too
            record.add(**row, error=error_text(exc))
        attn.zero_grad(set_to_none=True)
        release(device)
    summarise(record)


def summarise(record: Recorder) -> None:
    """Per shape and step: the kernel's speed-up over the reference, each at its best mode."""
    best: dict[tuple, dict] = {}
    for row in record.rows:
        key = (row["tokens"], row["batch"], row["what"], row["attention"])
        if "img_per_s" in row and row["img_per_s"] > best.get(key, {}).get("img_per_s", -1.0):
            best[key] = row
    for (tokens, batch, what, attention), row in best.items():
        reference = best.get((tokens, batch, what, REFERENCE_ATTENTION))
        if attention != REFERENCE_ATTENTION and reference:
            record.summary[f"{tokens} tokens, batch {batch}, {what}"] = {
                f"{attention}_over_{REFERENCE_ATTENTION}": round(row["img_per_s"] / reference["img_per_s"], 2),
                "modes": f"{row['mode']} / {reference['mode']}"}
    record.flush()
