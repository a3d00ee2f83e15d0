"""The typed architecture description shared by every LoMaR model."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from training.errors import ConfigError


@dataclass(frozen=True)
class LoMaRConfig:
    """Architecture and pretraining-objective settings of a LoMaR ViT."""

    img_size: int = 224  # nominal input size; the encoder runs at any multiple of patch_size
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    num_classes: int = 1000  # classifier only
    global_pool: bool = True  # classifier: mean of patch tokens + fc_norm; False: class token after norm
    window_size: int = 7  # pretraining: K, windows are K x K patches
    num_windows: int = 4  # pretraining: M windows per image
    mask_ratio: float = 0.8  # pretraining: floor(K*K*r) patches hidden per window
    norm_pix_loss: bool = True  # pretraining: per-patch normalised targets

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # every field has a scalar default: its type is the field's type
            value, kind = getattr(self, spec.name), type(spec.default)
            if not _of_type(value, kind):
                raise ConfigError(f"model option {spec.name} must be a{'n' if kind is int else ''} "
                                  f"{'finite ' if kind is float else ''}{kind.__name__}, got {value!r}")
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model option {name} must be >= 1, got {getattr(self, name)}")
        if self.mlp_ratio <= 0 or self.num_classes < 0:
            raise ConfigError(f"mlp_ratio must be > 0 and num_classes >= 0, got {self.mlp_ratio}, {self.num_classes}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.num_masked < 1:
            raise ConfigError(f"mask_ratio {self.mask_ratio} hides no patch of a {self.window_size}x{self.window_size} window")
        if self.window_size < 1 or self.num_windows < 1:
            raise ConfigError("window_size and num_windows must be positive")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_masked(self) -> int:
        """Patches hidden in each window: round-down(K*K*r)."""
        return int(self.window_size * self.window_size * self.mask_ratio)

    def replace(self, **overrides: Any) -> "LoMaRConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoMaRConfig":
        return cls().replace(**values)


def _of_type(value: Any, kind: type) -> bool:
    """bool: a bool; int: an int, not a bool; float: a finite int or float, not a bool; else an instance."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)
