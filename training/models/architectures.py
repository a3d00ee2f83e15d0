"""The registered LoMaR architectures by name, and `model_config` (torch-free: the control plane reads it to size
jobs before anything is queued; `training.models.registry` builds the modules)."""
from __future__ import annotations

from typing import Any

from training.errors import ConfigError
from training.models.config import LoMaRConfig

ARCHITECTURES: dict[str, LoMaRConfig] = {
    "lomar_tiny_patch16": LoMaRConfig(embed_dim=192, depth=12, num_heads=3),
    "lomar_small_patch16": LoMaRConfig(embed_dim=384, depth=12, num_heads=6),
    "lomar_base_patch16": LoMaRConfig(embed_dim=768, depth=12, num_heads=12),
    "lomar_large_patch16": LoMaRConfig(embed_dim=1024, depth=24, num_heads=16),
    "lomar_base_patch14": LoMaRConfig(patch_size=14, embed_dim=768, depth=12, num_heads=12),
    "lomar_base_patch8": LoMaRConfig(patch_size=8, embed_dim=768, depth=12, num_heads=12),
}


def list_models() -> list[str]:
    return sorted(ARCHITECTURES)


def model_config(name: str, **overrides: Any) -> LoMaRConfig:
    """The registered architecture `name` with `overrides` (img_size, num_classes, global_pool, ...) applied."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    base = ARCHITECTURES[name]
    if "patch_size" not in overrides and "img_size" not in overrides and 224 % base.patch_size:
        overrides["img_size"] = base.patch_size * 16  # nominal size must be a multiple of the patch
    return base.replace(**overrides)
