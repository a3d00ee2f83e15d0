"""Safe checkpoint loading for this project's files and the paper's official ones.

Files are read with `torch.load(weights_only=True)` and an allow-list (`argparse.Namespace`, which the official
files store their arguments in): nothing else is ever unpickled. The architecture comes from the stored
`model_args` (this project) or is inferred from the weights and the stored `args` (official files).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from training.errors import CheckpointError
from training.models.classifier import LoMaRClassifier
from training.models.config import LoMaRConfig
from training.models.pretrainer import LoMaRPretrainer
from training.models.registry import build_model

SAFE_GLOBALS = [argparse.Namespace]
# Present in official pretrained files but never used: LoMaR has no absolute position embedding.
UNUSED_OFFICIAL_KEYS = ("pos_embed",)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely; every failure becomes a CheckpointError naming the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        if refused:
            raise CheckpointError(
                f"checkpoint {path} was refused: it holds objects outside the allow-list of safe types "
                f"(weights_only loading): {refused[0]}"
            ) from exc
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (corrupt or another format)") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict")
    return data


def state_dict_of(data: dict[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint dict ('model' entry, or the dict itself if it is a bare state dict)."""
    state = data.get("model", data)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has no model state dict")
    return state


def stored_args(data: dict[str, Any]) -> dict[str, Any]:
    """The training arguments stored in a checkpoint (official files: an argparse.Namespace), as a dict."""
    args = data.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return args if isinstance(args, dict) else {}


def infer_config(state: dict[str, torch.Tensor], args: dict[str, Any], pretrain: bool, path: Any) -> LoMaRConfig:
    """Architecture from the weights' shapes, plus image size and objective settings from the stored args."""
    try:
        proj = state["patch_embed.proj.weight"]  # (D, C, p, p)
        dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
        head_dim = state["blocks.0.attn.rpe_k.lookup_table_weight"].shape[1]
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a LoMaR ViT: missing {exc}") from exc
    values: dict[str, Any] = dict(
        patch_size=patch, in_chans=in_chans, embed_dim=dim, depth=depth, num_heads=dim // head_dim,
        mlp_ratio=hidden / dim, qkv_bias="blocks.0.attn.qkv.bias" in state,
        img_size=int(args.get("input_size", 224)),
    )
    if pretrain:
        values["window_size"] = int(args.get("window_size", 7))
        values["num_windows"] = int(args.get("num_window", 4))
        values["mask_ratio"] = float(args.get("mask_ratio", 0.8))
        values["norm_pix_loss"] = bool(args.get("norm_pix_loss", True))
    else:
        head = state.get("head.weight")
        values["num_classes"] = head.shape[0] if head is not None else 0
        values["global_pool"] = "fc_norm.weight" in state
    return LoMaRConfig(**values)


def _load(path: str | os.PathLike, pretrain: bool) -> LoMaRClassifier | LoMaRPretrainer:
    data = read_checkpoint(path)
    state = dict(state_dict_of(data, path))
    for key in UNUSED_OFFICIAL_KEYS:
        state.pop(key, None)
    if "model_args" in data:
        config = LoMaRConfig.from_dict(data["model_args"])
    else:
        config = infer_config(state, stored_args(data), pretrain, path)
    model = build_model(config, pretrain)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        kind = "pretrained" if pretrain else "classifier"
        hint = ""
        if not pretrain and "encoder_pred.weight" in state:
            hint = " (it is a pretrained checkpoint: fine-tune it, or load it with load_pretrained)"
        elif pretrain and "head.weight" in state:
            hint = " (it is a fine-tuned classifier: load it with load_classifier)"
        raise CheckpointError(
            f"checkpoint {path} does not fit a LoMaR {kind}{hint}: missing keys {missing or 'none'}; "
            f"unexpected keys {unexpected or 'none'}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} has weights of the wrong shape: {exc}") from exc
    return model.eval()


def load_classifier(path: str | os.PathLike) -> LoMaRClassifier:
    """A LoMaR classifier from a fine-tuned checkpoint (this project's or an official one), in eval mode."""
    return _load(path, pretrain=False)


def load_pretrained(path: str | os.PathLike) -> LoMaRPretrainer:
    """A LoMaR pretraining model from a pretrained checkpoint (this project's or an official one), in eval mode."""
    return _load(path, pretrain=True)


def checkpoint_kind(path: str | os.PathLike) -> str:
    """'pretrained' or 'classifier', from the keys of the checkpoint's weights."""
    state = state_dict_of(read_checkpoint(path), path)
    return "pretrained" if "encoder_pred.weight" in state else "classifier"


def save_checkpoint(path: str | os.PathLike, model: LoMaRClassifier | LoMaRPretrainer, **extra: Any) -> None:
    """Write {model, model_args, **extra} atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.state_dict(), "model_args": model.config.to_dict(), **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


