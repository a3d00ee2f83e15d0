"""The mask a reconstruction model takes (its BOOL `mask` input, one entry per patch): which patches are hidden
for a mask ratio and a seed. The gateway's previews and a job's reconstruction scoring sample the same masks.
"""
from __future__ import annotations

import numpy as np


def sample_mask(grid: tuple[int, int], mask_ratio: float, seed: int) -> np.ndarray:
    """Hide round(mask_ratio * h * w) patches chosen uniformly at random; the same seed gives the same mask.

    Returns:
        bool (h, w), True = hidden.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    h, w = grid
    hidden = np.zeros(h * w, dtype=bool)
    hidden[np.random.default_rng(seed).permutation(h * w)[: round(mask_ratio * h * w)]] = True
    return hidden.reshape(h, w)
