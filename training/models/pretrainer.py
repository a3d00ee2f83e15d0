"""LoMaR pretraining model: masked reconstruction inside small windows, no decoder."""
from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from training.models.config import LoMaRConfig
from training.models.vit import LAYER_NORM_EPS, LoMaRViT
from training.models.windows import crop_windows, patchify, sample_masks, sample_windows


def reconstruction_targets(crops: torch.Tensor, patch: int, norm_pix: bool) -> torch.Tensor:
    """crops (N, 3, K*p, K*p) normalised pixels -> per-patch targets (N, K*K, p*p*3)."""
    target = patchify(crops, patch)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as the reference
        target = (target - mean) / (var + 1e-6).sqrt()
    return target


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over hidden patches only. pred, target (..., K*K, P); mask Bool (..., K*K)."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum()


class LoMaRPretrainer(LoMaRViT):
    """Encoder + mask token + final norm + linear pixel head (`encoder_pred`) on every window token."""

    def __init__(self, config: LoMaRConfig) -> None:
        super().__init__(config)
        dim = config.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.encoder_pred = nn.Linear(dim, config.patch_size**2 * config.in_chans)
        self.init_weights()
        trunc_normal_(self.mask_token, std=0.02)

    def reconstruct_windows(self, x: torch.Tensor, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predict every patch of the given windows.

        Args:
            x: normalised images, float (B, 3, H, W).
            windows: Long (B, M, 2), (top row, left column) of each window, in patches.
            mask: Bool (B, M, K*K), True = hidden, row-major inside the window.
        Returns:
            pred (B, M, K*K, p*p*3): head output for every window token, in normalised-pixel space.
        """
        crops = crop_windows(x, windows, self.config.window_size, self.config.patch_size)  # before embedding
        return self._predict(crops, mask)

    def _predict(self, crops: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """crops (B*M, 3, K*p, K*p), mask (B, M, K*K) -> pred (B, M, K*K, p*p*3)."""
        k = self.config.window_size
        batch, count, _ = mask.shape
        patches = self.patch_embed(crops)  # (B*M, K, K, D)
        hidden = mask.reshape(batch * count, k, k, 1)
        patches = torch.where(hidden, self.mask_token.to(patches.dtype).view(1, 1, 1, -1), patches)
        tokens = self.norm(self.encode_tokens(patches))  # (B*M, 1 + K*K, D)
        pred = self.encoder_pred(tokens[:, 1:])  # class token dropped
        return pred.view(batch, count, k * k, -1)

    def window_loss(self, x: torch.Tensor, windows: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Norm-pix MSE over the hidden patches of the windows; shapes as in reconstruct_windows."""
        return self._loss(crop_windows(x, windows, self.config.window_size, self.config.patch_size), pred, mask)

    def _loss(self, crops: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Norm-pix MSE of pred (B, M, K*K, P) against crops (B*M, 3, K*p, K*p) over the hidden patches."""
        target = reconstruction_targets(crops, self.config.patch_size, self.config.norm_pix_loss)
        return masked_mse(pred, target.view(pred.shape), mask)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows (B, M, 2) and masks (B, M, K*K) for a batch of images (B, 3, H, W)."""
        c = self.config
        grid = (x.shape[-2] // c.patch_size, x.shape[-1] // c.patch_size)
        windows = sample_windows(x.shape[0], grid, c.window_size, c.num_windows, device=x.device, generator=generator)
        mask = sample_masks(x.shape[0], c.num_windows, c.window_size, c.num_masked, device=x.device, generator=generator)
        return windows, mask

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) -> (loss, pred (B, M, K*K, p*p*3), mask (B, M, K*K)); samples windows and masks itself."""
        windows, mask = self.sample(x)
        crops = crop_windows(x, windows, self.config.window_size, self.config.patch_size)  # once for both
        pred = self._predict(crops, mask)
        return self._loss(crops, pred, mask), pred, mask
