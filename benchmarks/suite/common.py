"""What the suite's parts share: their settings, a result recorder that survives a killed part, clean-up between
measurements. Timing is benchmarks/model_throughput.py's `images_per_second`."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


class Skip(Exception):
    """A part (or one measurement) cannot run here; the message says why."""


# LoMaR's attention implementations the suite measures side by side (training/models/vit.py): the fused Triton
# kernel and the SDPA + materialised bias reference; the kernel runs on CUDA only
KERNEL_ATTENTION, REFERENCE_ATTENTION = "triton", "sdpa_bias"
KERNEL_NOT_HERE = (f"{KERNEL_ATTENTION} attention rows not measured: the fused kernel runs on CUDA only (its tests "
                   "run it on the CPU through Triton's interpreter)")


def attention_note(settings: "Settings", record: "Recorder") -> None:
    """Say in the part's notes when the kernel's rows are left out."""
    if KERNEL_ATTENTION not in settings.attention:
        record.note(KERNEL_NOT_HERE)


@dataclass(frozen=True)
class Settings:
    """Sizes of every measurement; `for_device` gives the full H100 run or the seconds-long CPU smoke run."""

    device: str  # cuda | cpu
    quick: bool
    model: str  # tiny | base: LoMaR-<model>/16 and timm's vit_<model>_patch16_224
    compile_modes: tuple[bool, ...]  # (False,) or (False, True): eager, then compiled
    pretrain_sizes: tuple[int, ...]
    pretrain_batch: int
    infer_cases: tuple[tuple[int, int], ...]  # (image size, batch)
    onnx_batch: int
    steps: int  # timed iterations
    warmup: int  # untimed iterations first (compilation happens in them)
    data_images: int  # JPEGs generated for the data path
    data_seconds: float  # CPU decode + augment measuring time
    serve_concurrency: tuple[int, ...]
    serve_seconds: float
    attention: tuple[str, ...]  # LoMaR attention implementations, each measured beside the other
    layer_cases: tuple[tuple[int, int, int], ...]  # one attention layer: (patch-grid side, images, sequences each)

    @classmethod
    def for_device(cls, device: str, quick: bool) -> "Settings":
        attention = (KERNEL_ATTENTION, REFERENCE_ATTENTION) if device == "cuda" else (REFERENCE_ATTENTION,)
        if quick:
            return cls(device=device, quick=True, model="tiny", compile_modes=(False,), pretrain_sizes=(128,),
                       pretrain_batch=2, infer_cases=((64, 2),), onnx_batch=2, steps=1, warmup=0,
                       data_images=8, data_seconds=0.5, serve_concurrency=(1, 4), serve_seconds=2.0,
                       attention=attention, layer_cases=((4, 2, 1), (7, 2, 4)))
        # layers: 448 px batch 64, 224 px batch 256, and the pretraining step's 4 windows (7 x 7) of 128 images
        return cls(device=device, quick=False, model="base", compile_modes=(False, True), pretrain_sizes=(224, 448),
                   pretrain_batch=128, infer_cases=((224, 256), (448, 64)), onnx_batch=64, steps=20, warmup=5,
                   data_images=64, data_seconds=5.0, serve_concurrency=(1, 4, 16, 64), serve_seconds=8.0,
                   attention=attention, layer_cases=((28, 64, 1), (14, 256, 1), (7, 128, 4)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recorder:
    """One part's results, rewritten to `path` after every change, so a part killed at its time cap keeps what it
    measured. `rows` are measurements; `summary` holds the ratios against the targets; `notes` say what was
    skipped inside the part and why."""

    path: Path
    deadline: float  # time.monotonic() after which no new measurement starts
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        self.flush()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.flush()

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows": self.rows, "summary": self.summary, "notes": self.notes}, default=str))
        os.replace(tmp, self.path)


def best_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The fastest measured row (eager or compiled) of each (model, size)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["model"], row["size"])
        if "img_per_s" in row and row["img_per_s"] > best.get(key, {}).get("img_per_s", -1.0):
            best[key] = row
    return best


def release(device: torch.device) -> None:
    """Forget compiled graphs and cached blocks between measurements."""
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 600 else text[:600] + " ..."
