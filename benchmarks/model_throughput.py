"""LoMaR vs a plain timm ViT of the same size: pretraining step and inference throughput, side by side.

Pretraining step = forward + backward + AdamW on random images (LoMaR: M windows of K x K patches per image;
plain ViT: a supervised step on the whole image, the usual cost reference). Inference = classifier forward.

    python benchmarks/model_throughput.py                                  # CPU, tiny model, 224
    python benchmarks/model_throughput.py --device cuda --model base --sizes 224 448 --batch-size 64 \
        --infer-batch-size 256 --dtype bf16 [--compile]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.models import create_model  # noqa: E402

TIMM_NAMES = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224",
              "large": "vit_large_patch16_224"}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(step: Callable[[], None], batch: int, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return batch * iters / (time.perf_counter() - start)


def train_step(model: torch.nn.Module, loss_of: Callable[[], torch.Tensor], device: torch.device, dtype) -> Callable:
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=fused)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def infer_step(model: torch.nn.Module, x: torch.Tensor, device: torch.device, dtype) -> Callable:
    @torch.inference_mode()
    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(TIMM_NAMES), default="tiny")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--infer-batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    name = f"lomar_{args.model}_patch16"
    torch.manual_seed(0)
    print(f"device={device} model={args.model} dtype={args.dtype} compile={args.compile} "
          f"train_batch={args.batch_size} infer_batch={args.infer_batch_size}")
    print(f"{'size':>5} {'what':<10} {'lomar img/s':>12} {'plain ViT img/s':>16} {'ratio':>7}")
    for size in args.sizes:
        lomar_pre = create_model(name, pretrain=True, img_size=size).to(device)
        lomar_clf = create_model(name, img_size=size).to(device).eval()
        plain = timm.create_model(TIMM_NAMES[args.model], img_size=size, num_classes=1000).to(device)
        if args.compile:
            lomar_pre, lomar_clf, plain = (torch.compile(m) for m in (lomar_pre, lomar_clf, plain))
        x = torch.randn(args.batch_size, 3, size, size, device=device)
        labels = torch.randint(0, 1000, (args.batch_size,), device=device)
        lomar_train = images_per_second(train_step(lomar_pre, lambda: lomar_pre(x)[0], device, dtype),
                                        args.batch_size, device, args.warmup, args.iters)
        plain_train = images_per_second(
            train_step(plain, lambda: torch.nn.functional.cross_entropy(plain(x), labels), device, dtype),
            args.batch_size, device, args.warmup, args.iters)
        xi = torch.randn(args.infer_batch_size, 3, size, size, device=device)
        plain.eval()
        lomar_infer = images_per_second(infer_step(lomar_clf, xi, device, dtype), args.infer_batch_size, device,
                                        args.warmup, args.iters)
        plain_infer = images_per_second(infer_step(plain, xi, device, dtype), args.infer_batch_size, device,
                                        args.warmup, args.iters)
        print(f"{size:>5} {'pretrain':<10} {lomar_train:>12.1f} {plain_train:>16.1f} {lomar_train / plain_train:>6.2f}x")
        print(f"{size:>5} {'inference':<10} {lomar_infer:>12.1f} {plain_infer:>16.1f} {lomar_infer / plain_infer:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
