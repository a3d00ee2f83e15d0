"""Window sampling, masking, cropping and patch layout."""
from __future__ import annotations

import pytest
import torch

from training.errors import ConfigError
from training.models.windows import crop_windows, patchify, sample_masks, sample_windows, unpatchify


@pytest.mark.parametrize("grid,count", [((14, 14), 4), ((28, 28), 4), ((7, 7), 1), ((8, 9), 6)])
def test_windows_are_distinct_and_inside_the_grid(grid, count):
    generator = torch.Generator().manual_seed(1)
    windows = sample_windows(64, grid, 7, count, generator=generator)
    assert windows.shape == (64, count, 2) and windows.dtype == torch.long
    assert windows.min() >= 0
    assert (windows[..., 0] <= grid[0] - 7).all() and (windows[..., 1] <= grid[1] - 7).all()
    for per_image in windows:
        assert len({tuple(w.tolist()) for w in per_image}) == count


def test_windows_differ_across_images():
    windows = sample_windows(32, (14, 14), 7, 4, generator=torch.Generator().manual_seed(0))
    assert len({tuple(map(tuple, w.tolist())) for w in windows}) > 1


def test_too_many_windows_is_a_clear_error():
    with pytest.raises(ConfigError, match="distinct windows"):
        sample_windows(1, (7, 8), 7, 3)
    with pytest.raises(ConfigError, match="does not fit"):
        sample_windows(1, (6, 14), 7, 1)


def test_masks_hide_exactly_the_requested_count():
    mask = sample_masks(16, 4, 7, 39, generator=torch.Generator().manual_seed(3))
    assert mask.shape == (16, 4, 49) and mask.dtype == torch.bool
    assert (mask.sum(-1) == 39).all()
    assert not torch.equal(mask[0, 0], mask[0, 1])


def test_crop_windows_takes_the_right_pixels():
    images = torch.randn(2, 3, 64, 80)
    windows = torch.tensor([[[0, 0], [1, 2]], [[2, 3], [0, 1]]])
    crops = crop_windows(images, windows, window=2, patch=8)
    assert crops.shape == (4, 3, 16, 16)
    for b in range(2):
        for m in range(2):
            top, left = windows[b, m].tolist()
            assert torch.equal(crops[b * 2 + m], images[b, :, top * 8: top * 8 + 16, left * 8: left * 8 + 16])


def test_patchify_layout_and_inverse():
    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 16)
    assert patches.shape == (2, 6, 16 * 16 * 3)
    gy, gx, y, x, c = 1, 2, 5, 11, 2
    assert patches[1, gy * 3 + gx, (y * 16 + x) * 3 + c] == images[1, c, gy * 16 + y, gx * 16 + x]
    assert torch.equal(unpatchify(patches, 16, (2, 3)), images)
