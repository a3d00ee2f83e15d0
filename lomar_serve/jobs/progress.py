"""A job's progress, read from training's JSON-lines metrics log (OUTPUT_DIR/metrics.jsonl) and the job log.

Training writes records {"split": "train"|"epoch"|"val", "step", "epoch", ...} (training/metrics_log.py).
The job's progress is a fraction of the whole job: training takes TRAIN_SHARE of it, export and verification the
rest.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.checkpoints import METRICS_FILE

STAGE_START = {"train": 0.0, "export": 0.8, "verify": 0.9, "deploy": 0.95, "done": 1.0}
TRAIN_SHARE = 0.8
LOG_TAIL_BYTES = 4000


def read_records(output_dir: Path) -> list[dict[str, Any]]:
    """Complete records of the metrics log (a line being written is skipped)."""
    path = Path(output_dir) / METRICS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def training_progress(records: list[dict[str, Any]], epochs: int) -> tuple[float, dict[str, Any]]:
    """(fraction of training done, latest figures) from the metrics records."""
    done_epochs = sum(1 for r in records if r.get("split") == "epoch")
    figures: dict[str, Any] = {"epochs": epochs, "epochs_done": done_epochs}
    latest_train = next((r for r in reversed(records) if r.get("split") == "train"), None)
    if latest_train is not None:
        figures.update(step=latest_train.get("step"), train_loss=latest_train.get("loss"), lr=latest_train.get("lr"))
    latest_val = next((r for r in reversed(records) if r.get("split") == "val"), None)
    if latest_val is not None:
        figures.update({f"val_{k}": v for k, v in latest_val.items() if k in ("top1", "top5", "loss")})
    return min(1.0, done_epochs / max(epochs, 1)), figures


def job_progress(stage: str, train_fraction: float = 0.0) -> float:
    """The whole job's fraction done, at the start of `stage` (or `train_fraction` through training)."""
    if stage == "train":
        return round(TRAIN_SHARE * train_fraction, 4)
    return STAGE_START.get(stage, 0.0)


def log_tail(path: Path, size: int = LOG_TAIL_BYTES) -> str:
    """The last `size` bytes of a log file, as text ("" when there is none)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - size))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
