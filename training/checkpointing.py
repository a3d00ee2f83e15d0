"""Full training state in one atomic file, and resumption from it.

A training checkpoint is a `training.models.save_checkpoint` file ({model, model_args, ...}, so
`load_classifier`/`load_pretrained` read it) that also holds optimizer, grad scaler, schedule, position
(epoch, iteration inside it, global step), RNG states, the resolved config and optional extras (EMA weights, best
metric, class names). Files are read with `training.models.read_checkpoint` (safe loading): a truncated or
corrupt file is refused with a CheckpointError naming it.
"""
from __future__ import annotations

import logging
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.checkpoints import LAST_CHECKPOINT
from training.errors import CheckpointError
from training.models import read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

TRAINING_KEYS = ("model", "optimizer", "epoch", "iteration", "step", "config")


@dataclass
class Position:
    """Where training stands: `iteration` micro-batches of `epoch` are done; `step` optimizer steps overall."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0


@dataclass
class TrainingState:
    """What a checkpoint restores besides the model weights."""

    position: Position = field(default_factory=Position)
    extra: dict[str, Any] = field(default_factory=dict)


def rng_states() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), NumPy and Python, as safe-loadable tensors and lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["gauss"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_training_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    schedule: Any, position: Position, config: dict[str, Any], **extra: Any,
) -> None:
    """Atomically write the full training state (model = the unwrapped LoMaR model)."""
    save_checkpoint(
        path, model, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), schedule=schedule.state_dict(),
        epoch=position.epoch, iteration=position.iteration, step=position.step, rng=rng_states(), config=config,
        **extra,
    )


def load_training_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
) -> TrainingState:
    """Restore model, optimizer, scaler and RNG states from `path`; returns the position and the extras."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # training checkpoints are always zip archives
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): not a torch zip archive")
    data = read_checkpoint(path)
    missing = [key for key in TRAINING_KEYS if key not in data]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed: it is not a training checkpoint (missing {', '.join(missing)})"
        )
    if data.get("model_args") != model.config.to_dict():
        raise CheckpointError(
            f"checkpoint {path} was trained with a different architecture ({data.get('model_args')}); "
            f"the current config builds {model.config.to_dict()}: use another --output-dir or the same settings"
        )
    try:
        model.load_state_dict(data["model"], strict=True)
        optimizer.load_state_dict(data["optimizer"])
        scaler.load_state_dict(data.get("scaler", {}))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this training run: {exc}") from exc
    if "rng" in data:
        set_rng_states(data["rng"])
    position = Position(epoch=int(data["epoch"]), iteration=int(data["iteration"]), step=int(data["step"]))
    known = set(TRAINING_KEYS) | {"model_args", "scaler", "schedule", "rng"}
    extra = {key: value for key, value in data.items() if key not in known}
    log.info("resumed from %s at epoch %d, iteration %d (step %d)", path, position.epoch, position.iteration,
             position.step)
    return TrainingState(position=position, extra=extra)


def resume_path(output_dir: str | Path, resume: str, auto_resume: bool) -> Path | None:
    """The checkpoint to resume from: --resume, else OUTPUT_DIR/checkpoint-last.pth when auto-resume finds one."""
    if resume:
        if not Path(resume).is_file():
            raise CheckpointError(f"--resume {resume}: no such file")
        return Path(resume)
    last = Path(output_dir) / LAST_CHECKPOINT
    return last if auto_resume and last.is_file() else None
