"""(a) Pretraining img/s: LoMaR (4 windows of 7x7, mask ratio 0.8) vs the project's global MAE baseline, per image
size, eager and compiled; full steps (forward, backward, fused AdamW), bf16 autocast on CUDA; LoMaR once per
attention implementation (the fused Triton kernel, then SDPA + bias).

The measurement itself is `benchmarks/pretrain_throughput.py`'s `measure` (same models, same step)."""
from __future__ import annotations

import torch

from benchmarks.pretrain_throughput import measure
from benchmarks.suite.common import Recorder, Settings, attention_note, best_rows, error_text, release

TARGET_IMG_S = 2500.0  # LoMaR-B/16 at every size
TARGET_RATIO_448 = 3.4  # LoMaR / MAE at 448


def run(settings: Settings, record: Recorder) -> None:
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    attention_note(settings, record)
    # every eager figure first (cheap); then LoMaR at each size (first attention implementation: the kernel on
    # CUDA), MAE from the largest size down, LoMaR with the other implementations (the reference), so that a time
    # cap falls on the least needed figures
    first, *others = settings.attention
    order = [("lomar", first, size) for size in settings.pretrain_sizes]
    order += [("mae", None, size) for size in reversed(settings.pretrain_sizes)]
    order += [("lomar", attention, size) for attention in others for size in settings.pretrain_sizes]
    for compiled in settings.compile_modes:
        for kind, attention, size in order:
            mode = "compiled" if compiled else "eager"
            row = dict(model=kind, attention=attention, size=size, mode=mode, batch=settings.pretrain_batch)
            if record.time_left() <= 0:
                record.note(f"{kind} {attention or ''} {size} {mode}: not measured, part time cap reached")
                continue
            try:
                result = measure(kind, settings.model, size, settings.pretrain_batch, settings.steps,
                                 settings.warmup, settings.device, compiled, attention=attention or "auto")
                record.add(**row, img_per_s=round(result["img_per_s"], 1), peak_mib=round(result["peak_mib"]))
            except Exception as exc:  # one failed measurement must not stop the others
                record.add(**row, error=error_text(exc))
            release(device)
            summarise(record)
    if settings.quick:
        record.note("quick mode: eager only (compilation takes minutes on a small CPU)")


def summarise(record: Recorder) -> None:
    """Best (eager or compiled) img/s of each model per size, LoMaR / MAE, and the targets."""
    best = best_rows(record.rows)
    for size in sorted({size for _, size in best}):
        lomar, mae = best.get(("lomar", size)), best.get(("mae", size))
        entry: dict = {}
        if lomar:
            entry.update(lomar_img_s=lomar["img_per_s"], lomar_mode=lomar["mode"], lomar_attention=lomar["attention"],
                         lomar_target_met=lomar["img_per_s"] >= TARGET_IMG_S)
        if mae:
            entry.update(mae_img_s=mae["img_per_s"], mae_mode=mae["mode"])
        if lomar and mae:
            entry["ratio"] = round(lomar["img_per_s"] / mae["img_per_s"], 2)
            if size == 448:
                entry["ratio_target_met"] = entry["ratio"] >= TARGET_RATIO_448
        record.summary[str(size)] = entry
    record.summary["targets"] = f"LoMaR >= {TARGET_IMG_S:.0f} img/s at each size; >= {TARGET_RATIO_448}x MAE at 448"
    record.flush()
