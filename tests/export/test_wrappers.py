"""The I/O-contract wrappers in PyTorch: window tiling, normalisation inside, reconstruction de-normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from export.errors import ExportError
from export.wrappers import ClassifierExport, ReconstructionExport, tiling, window_origins
from training.models import create_model, load_classifier
from training.models.windows import patchify

TOLERANCE = 1e-4


@pytest.mark.parametrize(("length", "expected"), [(7, [0]), (14, [0, 7]), (16, [0, 7, 9]), (20, [0, 7, 13])])
def test_window_origins_align_the_last_window_to_the_edge(length, expected):
    assert window_origins(length, 7) == expected


def test_window_origins_reject_a_grid_smaller_than_a_window():
    with pytest.raises(ExportError, match="does not fit"):
        window_origins(6, 7)


def test_tiling_takes_the_last_covering_window():
    grid, k = (9, 16), 7
    windows, source = tiling(grid, k)
    assert windows.tolist() == [[r, c] for r in (0, 2) for c in (0, 7, 9)]
    for row in range(grid[0]):
        for col in range(grid[1]):
            covering = [i for i, (top, left) in enumerate(windows.tolist())
                        if top <= row < top + k and left <= col < left + k]
            last = covering[-1]
            top, left = windows[last].tolist()
            assert source[row * grid[1] + col] == (last * k + row - top) * k + col - left


def test_classifier_wrapper_matches_reference(official_dir, reference_outputs):
    wrapper = ClassifierExport(load_classifier(official_dir / "official_finetuned.pth"))
    with torch.no_grad():
        logits, embedding = wrapper(torch.from_numpy(reference_outputs["images_uint8"]))
    np.testing.assert_allclose(logits.numpy(), reference_outputs["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(embedding.numpy(), reference_outputs["features"], atol=TOLERANCE, rtol=0)


def test_reconstruction_wrapper_patches_come_from_reconstruct_windows():
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=1).eval()
    wrapper = ReconstructionExport(model, (144, 128))  # 9 x 8 grid: overlapping windows on both axes
    image = torch.randint(0, 256, (2, 3, 144, 128), dtype=torch.uint8)
    mask = torch.rand(2, 9, 8) < 0.7
    with torch.no_grad():
        patches, reconstruction = wrapper(image, mask)
        x = wrapper.normalize(image)
        for index, (top, left) in enumerate(wrapper.windows.tolist()):
            window_mask = mask[:, top:top + 7, left:left + 7].reshape(2, 1, 49)
            pred = model.reconstruct_windows(x, torch.tensor([[[top, left]]] * 2), window_mask)[:, 0]  # (B, 49, P)
            owned = [(r, c) for r in range(9) for c in range(8)
                     if int(wrapper.source[r * 8 + c]) // 49 == index]
            for r, c in owned:
                torch.testing.assert_close(patches[:, r * 8 + c], pred[:, (r - top) * 7 + c - left])
    assert patches.shape == (2, 72, 768) and reconstruction.shape == (2, 3, 144, 128)
    assert reconstruction.min() >= 0 and reconstruction.max() <= 255


def test_reconstruction_of_perfect_predictions_is_the_input():
    """De-normalising each input patch's own norm-pix target gives the input pixels back."""
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=1).eval()
    wrapper = ReconstructionExport(model, (112, 112))
    image = torch.randint(0, 256, (1, 3, 112, 112), dtype=torch.uint8)
    x = wrapper.normalize(image)
    target = patchify(x, 16)
    perfect = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    pixels = wrapper.normalize.denormalize(wrapper.to_normalized_pixels(x, perfect))
    torch.testing.assert_close(pixels, image.float(), atol=1e-3, rtol=0)
