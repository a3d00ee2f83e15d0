"""(b) Inference img/s: the LoMaR classifier vs timm's plain ViT of the same size (random init, 1000 classes), eager
and compiled, bf16 autocast on CUDA; LoMaR once per attention implementation (the fused Triton kernel, then SDPA +
bias); the ratio compares each model at its best."""
from __future__ import annotations

import timm
import torch

from benchmarks.model_throughput import TIMM_NAMES, images_per_second
from benchmarks.suite.common import Recorder, Settings, attention_note, best_rows, error_text, release
from training.models import create_model

TARGET_RATIO = 0.85


def build(kind: str, model: str, size: int, attention: str | None) -> torch.nn.Module:
    if kind == "lomar":
        net = create_model(f"lomar_{model}_patch16", img_size=size, num_classes=1000)
        net.set_attention(attention)
        return net
    return timm.create_model(TIMM_NAMES[model], pretrained=False, img_size=size, num_classes=1000)


def measure(kind: str, settings: Settings, size: int, batch: int, compiled: bool, attention: str | None) -> float:
    device = torch.device(settings.device)
    torch.manual_seed(0)
    net = build(kind, settings.model, size, attention).to(device).eval()
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
    attention_note(settings, record)
    # LoMaR with the first implementation (the kernel on CUDA), timm, then LoMaR with the others (the reference,
    # already measured before the kernel): a time cap falls on the least needed figure
    kinds = [("lomar", settings.attention[0]), ("timm", None)] + [("lomar", a) for a in settings.attention[1:]]
    for compiled in settings.compile_modes:
        for size, batch in settings.infer_cases:
            for kind, attention in kinds:
                mode = "compiled" if compiled else "eager"
                row = dict(model=kind, attention=attention, size=size, batch=batch, mode=mode)  # timm: None
                if record.time_left() <= 0:
                    record.note(f"{kind} {attention or ''} {size} {mode}: not measured, part time cap reached")
                    continue
                try:
                    value = measure(kind, settings, size, batch, compiled, attention)
                    record.add(**row, img_per_s=round(value, 1))
                except Exception as exc:
                    record.add(**row, error=error_text(exc))
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
            entry.update(lomar_img_s=lomar["img_per_s"], lomar_mode=lomar["mode"], lomar_attention=lomar["attention"])
        if plain:
            entry.update(timm_img_s=plain["img_per_s"], timm_mode=plain["mode"])
        if lomar and plain:
            entry["ratio"] = round(lomar["img_per_s"] / plain["img_per_s"], 3)
            entry["target_met"] = entry["ratio"] >= TARGET_RATIO
        record.summary[str(size)] = entry
    record.summary["targets"] = f"LoMaR classifier >= {TARGET_RATIO}x timm ViT, each at its best"
    record.flush()
