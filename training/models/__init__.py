"""LoMaR models: `create_model` by registered name, and loaders for this project's and the paper's checkpoints.

The names below are imported on first use: `training.models.config`, `.architectures` and `.memory` need no
torch, so the control plane (whose install has no torch) reads the architecture table and sizes jobs through them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SOURCES = {
    "checkpoint_kind": "checkpoint", "load_classifier": "checkpoint", "load_pretrained": "checkpoint",
    "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "LoMaRClassifier": "classifier",
    "LoMaRConfig": "config",
    "LoMaRPretrainer": "pretrainer", "masked_mse": "pretrainer", "reconstruction_targets": "pretrainer",
    "ARCHITECTURES": "architectures", "list_models": "architectures", "model_config": "architectures",
    "build_model": "registry", "create_model": "registry",
}
__all__ = sorted(_SOURCES)

if TYPE_CHECKING:
    from training.models.architectures import ARCHITECTURES, list_models, model_config
    from training.models.checkpoint import (
        checkpoint_kind, load_classifier, load_pretrained, read_checkpoint, save_checkpoint,
    )
    from training.models.classifier import LoMaRClassifier
    from training.models.config import LoMaRConfig
    from training.models.pretrainer import LoMaRPretrainer, masked_mse, reconstruction_targets
    from training.models.registry import build_model, create_model


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
