"""Pretraining throughput: LoMaR vs a global masked-reconstruction baseline (MAE), side by side, one run.

A step = forward + backward + AdamW on random images, at each image size. LoMaR: M=4 windows of 7x7 patches per
image, 80 % hidden, no decoder. MAE baseline: a plain timm ViT of the same size encodes the 25 % visible patches
of the whole image, then an 8-block 512-d decoder (16 heads) reconstructs every patch (He et al., 2021).
Each measurement runs in its own process so the peak memory figures are separate (CUDA: peak allocated;
CPU: peak resident set size of the process, torch included).

    python benchmarks/pretrain_throughput.py                    # CPU: tiny model, batch 4, 2 steps
    python benchmarks/pretrain_throughput.py --device cuda --model base --batch-size 128 --steps 30 [--compile]
"""
from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import resource
import sys
import time
from pathlib import Path

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.models import create_model  # noqa: E402
from training.models.pretrainer import masked_mse, reconstruction_targets  # noqa: E402

SIZES = (224, 384, 448)
ENCODERS = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224",
            "large": "vit_large_patch16_224"}


class MAEBaseline(nn.Module):
    """MAE: visible-only timm ViT encoder + 8-block 512-d decoder over all patches; norm-pix MSE on hidden ones."""

    def __init__(self, encoder: str, img_size: int, mask_ratio: float = 0.75, decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16) -> None:
        super().__init__()
        self.vit = timm.create_model(encoder, pretrained=False, img_size=img_size, num_classes=0)
        self.patch = self.vit.patch_embed.patch_size[0]
        self.num_patches = self.vit.patch_embed.num_patches
        self.mask_ratio = mask_ratio
        dim = self.vit.embed_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, decoder_dim), requires_grad=False)
        self.decoder_blocks = nn.Sequential(*[
            timm.models.vision_transformer.Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True)
            for _ in range(decoder_depth)
        ])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch**2 * 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> loss; random 75 % of the patches hidden per image."""
        vit = self.vit
        tokens = vit.patch_embed(images) + vit.pos_embed[:, 1:]  # (B, L, D)
        batch, length, dim = tokens.shape
        keep = int(length * (1 - self.mask_ratio))
        order = torch.rand(batch, length, device=images.device).argsort(dim=1)  # (B, L)
        restore = order.argsort(dim=1)
        visible = tokens.gather(1, order[:, :keep, None].expand(-1, -1, dim))  # (B, keep, D)
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(batch, -1, -1)
        encoded = vit.norm(vit.blocks(torch.cat([cls, visible], dim=1)))  # (B, 1 + keep, D)
        x = self.decoder_embed(encoded)  # (B, 1 + keep, Dd)
        filler = self.mask_token.expand(batch, length - keep, -1)
        patches = torch.cat([x[:, 1:], filler], dim=1).gather(1, restore[:, :, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed  # (B, 1 + L, Dd)
        pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:]  # (B, L, p*p*3)
        mask = restore >= keep  # (B, L), True = hidden
        return masked_mse(pred, reconstruction_targets(images, self.patch, norm_pix=True), mask)


def build(kind: str, model: str, size: int, attention: str = "auto") -> nn.Module:
    """attention: LoMaR's attention implementation (training/models/vit.py ATTENTION_IMPLEMENTATIONS)."""
    if kind == "lomar":
        net = create_model(f"lomar_{model}_patch16", pretrain=True, img_size=size)
        net.set_attention(attention)
        return net
    return MAEBaseline(ENCODERS[model], size)


def loss_of(kind: str, net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return net(images)[0] if kind == "lomar" else net(images)


def measure(kind: str, model: str, size: int, batch: int, steps: int, warmup: int, device_name: str,
            compile_model: bool, compile_mode: str | None = None, attention: str = "auto") -> dict:
    """Images per second of full training steps, and peak memory in MiB (runs in a child process).

    compile_mode: torch.compile's mode (None: its default; e.g. "max-autotune-no-cudagraphs"); attention: LoMaR's
    attention implementation."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    net = build(kind, model, size, attention).to(device).train()
    step_net = torch.compile(net, mode=compile_mode) if compile_model else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    images = torch.randn(batch, 3, size, size, device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_of(kind, step_net, images)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"img_per_s": batch * steps / (time.perf_counter() - start), "peak_mib": peak}


def _child(queue, *args) -> None:
    try:
        queue.put(measure(*args))
    except torch.cuda.OutOfMemoryError:
        queue.put({"img_per_s": float("nan"), "peak_mib": float("nan"), "error": "out of memory"})
    except Exception as exc:  # reported to the parent, which would otherwise wait for a result forever
        queue.put({"img_per_s": float("nan"), "peak_mib": float("nan"), "error": f"{type(exc).__name__}: {exc}"})


def measure_in_child(*args, timeout_s: float | None = None) -> dict:
    """measure(*args) in a spawned process; past timeout_s the process is killed and TimeoutError raised."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *args))
    process.start()
    try:
        result = queue.get(timeout=timeout_s)
    except queue_module.Empty:
        process.kill()
        process.join()
        raise TimeoutError(f"no result within {timeout_s:.0f} s") from None
    process.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=sorted(ENCODERS), default=None, help="default: base on cuda, tiny on cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on cuda, 4 on cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on cuda, 2 on cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 10 on cuda, 1 on cpu)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    model = args.model or ("base" if cuda else "tiny")
    batch = args.batch_size or (128 if cuda else 4)
    steps = args.steps or (30 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    device_label = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"pretraining step throughput, ViT-{model}/16, batch {batch}, {'bf16 autocast' if cuda else 'fp32'}, "
          f"{steps} timed steps, {device_label}{', compiled' if args.compile else ''}")
    memory = "peak MiB (CUDA alloc)" if cuda else "peak MiB (process RSS)"
    header = f"{'size':>5} | {'LoMaR img/s':>11} | {'MAE img/s':>10} | {'speed-up':>8} | LoMaR {memory} | MAE {memory}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        common = (model, size, batch, steps, warmup, args.device, args.compile)
        lomar, mae = measure_in_child("lomar", *common), measure_in_child("mae", *common)
        speedup = lomar["img_per_s"] / mae["img_per_s"]
        print(f"{size:>5} | {lomar['img_per_s']:>11.1f} | {mae['img_per_s']:>10.1f} | {speedup:>7.2f}x | "
              f"{lomar['peak_mib']:>{len(memory) + 6}.0f} | {mae['peak_mib']:>{len(memory) + 4}.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
