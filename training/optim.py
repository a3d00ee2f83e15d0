"""Optimizer parameter groups (no weight decay on norms, biases and tokens; layer-wise lr decay) and the schedule.

The learning rate is a pure function of the fractional epoch (linear warmup, then half-cycle cosine to min_lr), so
the schedule's only state is its settings and a resumed run follows it exactly.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


def layer_id(name: str, depth: int) -> int:
    """Depth index for layer-wise decay: embeddings and tokens 0, block i -> i + 1, norms and head depth + 1."""
    if name.startswith(("cls_token", "mask_token", "patch_embed")):
        return 0
    match = re.match(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: 1-d parameters (norms, biases) and the model's `no_weight_decay()` names get no decay; with
    layer_decay < 1 each block's lr is scaled by layer_decay ** (depth + 1 - layer)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    depth = len(getattr(model, "blocks", []))
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim == 1 or name in skip)
        layer = layer_id(name, depth) if layer_decay < 1.0 else 0
        key = (layer, decay)
        if key not in groups:
            groups[key] = {
                "params": [], "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - layer) if layer_decay < 1.0 else 1.0,
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def adamw(groups: list[dict[str, Any]], device: torch.device, **options: Any) -> torch.optim.AdamW:
    """AdamW over `groups`; the fused CUDA implementation (one kernel for all parameters) on CUDA."""
    return torch.optim.AdamW(groups, lr=0.0, fused=device.type == "cuda", **options)


@dataclass(frozen=True)
class CosineSchedule:
    """Linear warmup over warmup_epochs to lr, then half-cycle cosine down to min_lr at `epochs`."""

    lr: float
    min_lr: float
    warmup_epochs: float
    epochs: float

    def __call__(self, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            return self.lr * epoch / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1e-12)
        progress = min(1.0, (epoch - self.warmup_epochs) / span)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, epoch: float) -> float:
        """Set every group's lr (scaled by its lr_scale) for this fractional epoch; returns the base lr."""
        lr = self(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, float]:
        return asdict(self)
