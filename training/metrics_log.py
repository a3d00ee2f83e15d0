"""Training metrics: one JSON object per line in OUTPUT_DIR/metrics.jsonl, mirrored to TensorBoard events
(OUTPUT_DIR/tensorboard, scalars named SPLIT/KEY).

Records ({"split", "step", "time", ...}, step = optimizer steps so far): "run" when a run starts or resumes
(epoch, epochs, steps_per_epoch, total_steps, images); "train" every TrainConfig.logging_interval steps (epoch,
loss, lr, img_per_s, memory_mb); "epoch" at the end of each epoch (epoch, mean loss, lr, skipped_images, steps);
"val" after it when fine-tuning (epoch, loss, top1, top5, count). A resumed run appends: steps after its
checkpoint appear again.
Only the main process writes; on other ranks the logger is a no-op.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from contracts.checkpoints import METRICS_FILE


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated by this process, or its peak resident set size on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class MetricsLogger:
    """`log(split, step, **values)` appends {"split", "step", "time", **values} and writes scalars to TensorBoard."""

    def __init__(self, output_dir: str | Path, enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        self.handle = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            Path(output_dir).mkdir(parents=True, exist_ok=True)
            self.handle = open(Path(output_dir) / METRICS_FILE, "a", encoding="utf-8")
            self.writer = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))

    def log(self, split: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.handle.close()
            self.writer.close()
