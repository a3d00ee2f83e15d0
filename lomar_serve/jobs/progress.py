"""A job's progress, read from training's JSON-lines metrics log (OUTPUT_DIR/metrics.jsonl) and the job log.

Training writes records {"split", "step", "time", ...} (training/metrics_log.py): one "run" record when a run
(or a resumed run) starts, with its epochs and optimizer steps; a "train" record every log_every optimizer steps
(loss, lr, img_per_s); an "epoch" record (mean loss) and, when fine-tuning, a "val" record (loss, top1, top5) at the
end of each epoch. The job's progress is a fraction of the whole job: training takes TRAIN_SHARE of it, export and
verification the rest. Its ETA is that of the training stage, from the pace of the steps since the run started.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from contracts.checkpoints import METRICS_FILE

STAGE_START = {"train": 0.0, "export": 0.8, "verify": 0.9, "deploy": 0.95, "done": 1.0}
TRAIN_SHARE = 0.8
LOG_TAIL_BYTES = 4000
SPLITS = ("run", "train", "epoch", "val")  # the kinds of records training writes
ETA_FIGURES = {"train": "training", "ingest": "ingest"}  # stage -> the metrics entry with its eta_s


def read_chunk(output_dir: str | Path, offset: int = 0, max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The complete records of the metrics log from byte `offset` (at most `max_bytes` of them; a line being written
    is left for the next read), and the offset after the last one read: where the next read starts."""
    try:
        with open(Path(output_dir) / METRICS_FILE, "rb") as log:
            log.seek(offset)
            data = log.read(-1 if max_bytes is None else max_bytes)
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1  # up to the last complete line
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a corrupt line (or an offset inside one) is skipped
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, offset + end


def read_records(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete record of the metrics log ([] without one)."""
    return read_chunk(output_dir)[0]


def _latest(records: list[dict[str, Any]], split: str) -> dict[str, Any] | None:
    return next((r for r in reversed(records) if r.get("split") == split), None)


def training_eta(run: dict[str, Any] | None, latest: dict[str, Any] | None, total_steps: int | None,
                 now: float) -> float | None:
    """Seconds until the last step, at the pace of the steps from the `run` record to the `latest` train record,
    less the time since `latest` was written; None before two points of this run are known."""
    if run is None or latest is None or not total_steps:
        return None
    steps, seconds = latest.get("step", 0) - run.get("step", 0), latest.get("time", 0.0) - run.get("time", 0.0)
    if steps <= 0 or seconds <= 0:
        return None
    remaining = (total_steps - latest["step"]) * seconds / steps - max(0.0, now - latest["time"])
    return round(max(0.0, remaining), 1)


def training_progress(records: list[dict[str, Any]], epochs: int,
                      now: float | None = None) -> tuple[float, dict[str, Any]]:
    """(fraction of training done, latest figures and the ETA of training) from the metrics records."""
    ends = [r.get("epoch", -1) for r in records if r.get("split") == "epoch"]
    done_epochs = max(ends) + 1 if ends else 0  # a resumed run may write an epoch's record again
    figures: dict[str, Any] = {"epochs": epochs, "epochs_done": done_epochs}
    run, latest_train = _latest(records, "run"), _latest(records, "train")
    total_steps = run.get("total_steps") if run else None
    fraction = done_epochs / max(epochs, 1)
    if latest_train is not None:
        figures.update(step=latest_train.get("step"), train_loss=latest_train.get("loss"), lr=latest_train.get("lr"),
                       img_per_s=latest_train.get("img_per_s"))
        if total_steps:
            fraction = max(fraction, latest_train.get("step", 0) / total_steps)
    if total_steps:
        figures["total_steps"] = total_steps
    latest_val = _latest(records, "val")
    if latest_val is not None:
        figures.update({f"val_{k}": v for k, v in latest_val.items() if k in ("top1", "top5", "loss")})
    figures["eta_s"] = training_eta(run, latest_train, total_steps, time.time() if now is None else now)
    return min(1.0, fraction), figures


def job_eta(state: str, stage: str, metrics: dict[str, Any]) -> float | None:
    """A job's ETA: that of its training while it trains, or of its ingest (the worker keeps the figures in
    metrics["training"] and metrics["ingest"]), None otherwise."""
    figures = ETA_FIGURES.get(stage)
    if state != "running" or figures is None:
        return None
    eta = metrics.get(figures, {}).get("eta_s")
    return float(eta) if isinstance(eta, (int, float)) else None


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
