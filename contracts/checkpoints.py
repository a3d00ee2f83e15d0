"""The files a training run leaves in its output folder, as training writes them and export and jobs find them.

    OUTPUT_DIR/checkpoint-last.pth      full training state, refreshed every epoch (resumption starts here)
    OUTPUT_DIR/checkpoint-best.pth      fine-tuning: the best top-1 so far
    OUTPUT_DIR/checkpoint-NNNN.pth      kept every `save_every_epochs` epochs (NNNN = epochs done)
    OUTPUT_DIR/config.yaml              the resolved training config
    OUTPUT_DIR/metrics.jsonl            one JSON object per metric record
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

LAST_CHECKPOINT = "checkpoint-last.pth"
BEST_CHECKPOINT = "checkpoint-best.pth"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


def periodic_checkpoint(epochs_done: int) -> str:
    """File name of the checkpoint kept after `epochs_done` epochs: checkpoint-0020.pth."""
    return f"checkpoint-{epochs_done:04d}.pth"


def final_checkpoint(output_dir: Path) -> Path | None:
    """What a finished run hands on: checkpoint-best.pth when it exists (fine-tuning), else checkpoint-last.pth;
    None when the folder holds neither."""
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        if (output_dir / name).is_file():
            return output_dir / name
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (how model cards identify their source checkpoint), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
