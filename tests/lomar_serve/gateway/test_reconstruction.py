"""Mask sampling and the picture strip."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from contracts.reconstruction_mask import sample_mask
from lomar_serve.gateway.reconstruction import GAP, MASK_GREY, compose_panels, stack_rows, strips_png


def test_mask_ratio_and_seed():
    mask = sample_mask((14, 14), 0.75, seed=3)
    assert mask.shape == (14, 14) and mask.dtype == bool
    assert mask.sum() == round(0.75 * 196)
    np.testing.assert_array_equal(mask, sample_mask((14, 14), 0.75, seed=3))
    assert not np.array_equal(mask, sample_mask((14, 14), 0.75, seed=4))
    assert sample_mask((7, 7), 0.0, 1).sum() == 0 and sample_mask((7, 7), 1.0, 1).all()
    with pytest.raises(ValueError):
        sample_mask((7, 7), 1.5, 0)


def test_panels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 32, 48), dtype=np.uint8)
    reconstruction = rng.uniform(-20, 280, (3, 32, 48))
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True  # pixels rows 8..15, cols 16..23
    panels = compose_panels(image, mask, reconstruction)
    original = image.transpose(1, 2, 0)
    predicted = np.clip(np.rint(reconstruction), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(panels.original, original)
    np.testing.assert_array_equal(panels.reconstruction, predicted)
    assert (panels.masked[8:16, 16:24] == MASK_GREY).all()
    np.testing.assert_array_equal(panels.masked[:8], original[:8])
    np.testing.assert_array_equal(panels.pasted[8:16, 16:24], predicted[8:16, 16:24])
    np.testing.assert_array_equal(panels.pasted[16:], original[16:])
    strip = panels.strip()
    assert strip.shape == (32, 4 * 48 + 3 * GAP, 3)
    np.testing.assert_array_equal(strip[:, -48:], panels.pasted)


def test_png_rows_and_base64():
    image = np.full((3, 16, 16), 50, np.uint8)
    panels = compose_panels(image, sample_mask((2, 2), 0.5, 0), np.zeros((3, 16, 16)))
    png = Image.open(io.BytesIO(strips_png([panels, panels])))
    assert png.size == (4 * 16 + 3 * GAP, 2 * 16 + GAP)
    assert set(panels.as_base64_pngs()) == {"strip", "original", "masked", "reconstruction", "pasted"}
    assert stack_rows([panels.strip()]).shape == panels.strip().shape


def test_mask_must_tile_image():
    with pytest.raises(ValueError):
        compose_panels(np.zeros((3, 30, 30), np.uint8), np.zeros((4, 4), bool), np.zeros((3, 30, 30)))
