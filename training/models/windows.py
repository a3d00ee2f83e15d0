"""Window sampling, masking and cropping for local masked reconstruction.

Windows are K x K patches at a (top row, left column) position on the patch grid. Each image gets M distinct
windows; inside each, round-down(K*K*r) patches are hidden uniformly at random. (The reference code shares window
positions across a batch and gives image n window n mod M four times; this implementation samples M distinct
windows per image, which is what the paper describes.)
"""
from __future__ import annotations

import torch

from training.errors import ConfigError


def sample_windows(
    batch: int, grid: tuple[int, int], window: int, count: int, *, device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw `count` distinct window positions per image -> Long (B, M, 2) of (top, left) in patches."""
    rows, cols = grid[0] - window + 1, grid[1] - window + 1
    if rows < 1 or cols < 1:
        raise ConfigError(f"a {window}x{window} window does not fit a {grid[0]}x{grid[1]} patch grid")
    if count > rows * cols:
        raise ConfigError(f"{count} distinct windows do not fit in {rows * cols} window positions")
    noise = torch.rand(batch, rows * cols, generator=generator, device=device)
    flat = noise.argsort(dim=1)[:, :count]  # (B, M), distinct per image
    return torch.stack([flat // cols, flat % cols], dim=-1)


def sample_masks(
    batch: int, count: int, window: int, num_masked: int, *, device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hide exactly `num_masked` of the K*K patches of each window -> Bool (B, M, K*K), True = hidden."""
    noise = torch.rand(batch, count, window * window, generator=generator, device=device)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)  # rank of each position among K*K
    return ranks < num_masked


def crop_windows(images: torch.Tensor, windows: torch.Tensor, window: int, patch: int) -> torch.Tensor:
    """Cut the pixels under each window. images (B, C, H, W); windows (B, M, 2) -> (B*M, C, K*p, K*p)."""
    batch, count, _ = windows.shape
    span = torch.arange(window * patch, device=images.device)
    rows = windows[..., 0, None] * patch + span  # (B, M, K*p)
    cols = windows[..., 1, None] * patch + span  # (B, M, K*p)
    image_index = torch.arange(batch, device=images.device)[:, None, None, None]  # (B, 1, 1, 1)
    # advanced indices around a slice: result (B, M, K*p, K*p, C)
    crops = images[image_index, :, rows[..., :, None], cols[..., None, :]]
    return crops.permute(0, 1, 4, 2, 3).flatten(0, 1)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 3, h*p, w*p) -> (N, h*w, p*p*3); patch (gy, gx) holds pixels[c, gy*p + y, gx*p + x] at (y*p + x)*3 + c."""
    n, channels, height, width = images.shape
    h, w = height // patch, width // patch
    x = images.reshape(n, channels, h, patch, w, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, patch * patch * channels)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of patchify: (N, h*w, p*p*C) -> (N, C, h*p, w*p)."""
    n = patches.shape[0]
    h, w = grid
    x = patches.reshape(n, h, w, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, h * patch, w * patch)
