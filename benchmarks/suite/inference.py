"""(b) Inference img/s: the LoMaR classifier vs timm's plain ViT of the same size (random init, 1000 classes), eager
and compiled, bf16 autocast on CUDA; the ratio compares each model at its best."""
from __future__ import annotations

import timm
import torch

from benchmarks.model_throughput import TIMM_NAMES, images_per_second
from benchmarks.suite.common import Recorder, Settings, best_rows, error_text, release
from training.models import create_model

TARGET_RATIO = 0.85


def build(kind: str, model: str, size: int) -> torch.nn.Module:
    if kind == "lomar":
        return create_model(f"lomar_{model}_patch16", img_size=size, num_classes=1000)
    return timm.create_model(TIMM_NAMES[model], pretrained=False, img_size=size, num_classes=1000)


def measure(kind: str, settings: Settings, size: int, batch: int, compiled: bool) -> float:
    device = torch.device(settings.device)
    torch.manual_seed(0)
    net = build(kind, settings.model, size).to(device).eval()
    runner = torch.compile(net) if compiled else net
    images = torch.randn(batch, 3, size, size, device=device)

    @torch.inference_mode()
    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            runner(images)

    return images_per_second(step, batch, device, settings.warmup, settings.steps)


def run(settings: Settings, record: Recorder) -> None:
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    for compiled in settings.compile_modes:
        for size, batch in settings.infer_cases:
            for kind in ("lomar", "timm"):
                mode = "compiled" if compiled else "eager"
                if record.time_left() <= 0:
                    record.note(f"{kind} {size} {mode}: not measured, part time cap reached")
                    continue
                try:
                    value = measure(kind, settings, size, batch, compiled)
                    record.add(model=kind, size=size, batch=batch, mode=mode, img_per_s=round(value, 1))
                except Exception as exc:
                    record.add(model=kind, size=size, batch=batch, mode=mode, error=error_text(exc))
                release(device)
                summarise(record)
    if settings.quick:
        record.note("quick mode: eager only")


def summarise(record: Recorder) -> None:
    best = best_rows(record.rows)
    for size in sorted({size for _, size in best}):
        lomar, plain = best.get(("lomar", size)), best.get(("timm", size))
        entry: dict = {}
        if lomar:
            entry.update(lomar_img_s=lomar["img_per_s"], lomar_mode=lomar["mode"])
        if plain:
            entry.update(timm_img_s=plain["img_per_s"], timm_mode=plain["mode"])
        if lomar and plain:
            entry["ratio"] = round(lomar["img_per_s"] / plain["img_per_s"], 3)
            entry["target_met"] = entry["ratio"] >= TARGET_RATIO
        record.summary[str(size)] = entry
    record.summary["targets"] = f"LoMaR classifier >= {TARGET_RATIO}x timm ViT, each at its best"
    record.flush()
