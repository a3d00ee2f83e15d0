"""Torch modules that implement the exported models' I/O contract around a LoMaR model.

Both take `image` UINT8 (B, 3, H, W) RGB and normalise with ImageNet statistics inside the graph:
- `ClassifierExport`: image -> (logits (B, C), embedding (B, D)).
- `ReconstructionExport`: (image, mask Bool (B, h, w), True = hidden) -> (patches (B, h*w, p*p*3) head output in
  per-patch-normalised pixel space, reconstruction (B, 3, H, W) pixel values 0..255).
The grid is covered by K x K windows at rows/cols 0, K, 2K, ..., the last row/column aligned to the grid's edge;
a patch covered by several windows takes the prediction of the last window (row-major order) covering it.
H and W are fixed when exported (the iRPE tables depend on the grid); only the batch axis is dynamic.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from export.errors import ExportError
from training.models import LoMaRClassifier, LoMaRPretrainer
from training.models.windows import patchify, unpatchify

class ImageNormalize(nn.Module):
    """UINT8 (B, 3, H, W) -> float (B, 3, H, W) ImageNet-normalised, in `dtype`."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dtype = dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float() / 255.0
        return ((x - self.mean) / self.std).to(self.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised float (B, 3, H, W) -> pixel values (B, 3, H, W) clamped to 0..255."""
        return ((x.float() * self.std + self.mean) * 255.0).clamp(0.0, 255.0)


class ClassifierExport(nn.Module):
    """image UINT8 (B, 3, H, W) -> logits FP32 (B, C), embedding FP32 (B, D)."""

    def __init__(self, model: LoMaRClassifier, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.normalize = ImageNormalize(dtype)
        self.model = model.to(dtype).eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.forward_features(self.normalize(image))  # (B, D)
        logits = self.model.forward_head(embedding)  # (B, C)
        return logits.float(), embedding.float()


def window_origins(length: int, window: int) -> list[int]:
    """Window starts along one grid axis: 0, K, 2K, ..., the last one moved back to end at the edge."""
    if length < window:
        raise ExportError(f"a patch grid of {length} does not fit one {window}x{window} window")
    starts = list(range(0, length - window + 1, window))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def tiling(grid: tuple[int, int], window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows covering an h x w grid and, per grid patch, where its prediction comes from.

    Returns:
        windows: Long (M, 2), (top, left) of each window, row-major.
        source: Long (h*w,), index into the (M*K*K) window tokens of the last window covering each patch.
    """
    h, w = grid
    windows = [(top, left) for top in window_origins(h, window) for left in window_origins(w, window)]
    source = torch.empty(h * w, dtype=torch.long)
    for index, (top, left) in enumerate(windows):  # later windows overwrite earlier ones
        for dy in range(window):
            for dx in range(window):
                source[(top + dy) * w + left + dx] = (index * window + dy) * window + dx
    return torch.tensor(windows, dtype=torch.long), source


class ReconstructionExport(nn.Module):
    """(image UINT8 (B, 3, H, W), mask Bool (B, h, w)) -> patches FP32 (B, h*w, P), reconstruction FP32 (B, 3, H, W)."""

    def __init__(self, model: LoMaRPretrainer, image_size: tuple[int, int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        config = model.config
        self.patch, self.window = config.patch_size, config.window_size
        self.grid = (image_size[0] // self.patch, image_size[1] // self.patch)
        self.norm_pix = config.norm_pix_loss
        self.normalize = ImageNormalize(dtype)
        self.model = model.to(dtype).eval()
        windows, source = tiling(self.grid, self.window)
        rows = windows[:, 0, None] + torch.arange(self.window)  # (M, K) grid rows of each window
        cols = windows[:, 1, None] + torch.arange(self.window)  # (M, K)
        self.register_buffer("windows", windows, persistent=False)  # (M, 2)
        # flat grid index of each window token, (M, K*K) row-major inside the window
        self.register_buffer("window_cells", (rows[:, :, None] * self.grid[1] + cols[:, None, :]).flatten(1),
                             persistent=False)
        self.register_buffer("source", source, persistent=False)  # (h*w,)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(image)  # (B, 3, H, W)
        batch = image.shape[0]
        window_mask = mask.flatten(1)[:, self.window_cells]  # (B, M, K*K)
        windows = self.windows.unsqueeze(0).expand(batch, -1, -1)  # (B, M, 2)
        pred = self.model.reconstruct_windows(x, windows, window_mask)  # (B, M, K*K, P)
        patches = pred.flatten(1, 2)[:, self.source].float()  # (B, h*w, P)
        return patches, self.normalize.denormalize(self.to_normalized_pixels(x.float(), patches))

    def to_normalized_pixels(self, x: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Predictions (B, h*w, P) -> ImageNet-normalised image (B, 3, H, W), undoing each input patch's norm-pix."""
        if self.norm_pix:
            target = patchify(x, self.patch)  # (B, h*w, P) input patches, as the norm-pix targets saw them
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            patches = patches * std + mean
        return unpatchify(patches, self.patch, self.grid)
