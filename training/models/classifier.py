"""LoMaR classifier for fine-tuning and inference."""
from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from training.models.config import LoMaRConfig
from training.models.vit import LAYER_NORM_EPS, LoMaRViT


class LoMaRClassifier(LoMaRViT):
    """Encoder + global average pool over patch tokens + fc_norm + head (default), or class token + norm + head."""

    def __init__(self, config: LoMaRConfig) -> None:
        super().__init__(config)
        dim = config.embed_dim
        if config.global_pool:
            self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        else:
            self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.init_weights()
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=2e-5)

    @property
    def num_features(self) -> int:
        return self.config.embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised images (B, 3, H, W), H and W multiples of the patch size -> embedding (B, D)."""
        tokens = self.encode_tokens(self.patch_embed(x))  # (B, 1 + h*w, D)
        if self.config.global_pool:
            return self.fc_norm(tokens[:, 1:].mean(dim=1))
        return self.norm(tokens)[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, D) -> logits (B, num_classes)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
