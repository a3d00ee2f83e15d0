"""The paper's reference outputs, reproduced through the public API from the official checkpoint files."""
from __future__ import annotations

import numpy as np
import torch

from contracts.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from training.data import EvalTransform
from training.models import load_classifier, load_pretrained

TOLERANCE = 1e-4


def test_normalisation_matches_reference(reference_outputs, reference_meta):
    """The contract's statistics are the reference code's, and the evaluation transform normalises like it."""
    assert list(IMAGENET_MEAN) == reference_meta["normalization"]["mean"]
    assert list(IMAGENET_STD) == reference_meta["normalization"]["std"]
    normalize = EvalTransform(reference_meta["img_size"]).normalize
    images = torch.from_numpy(reference_outputs["images_uint8"])  # uint8 (N, 3, H, W)
    expected = torch.from_numpy(reference_outputs["normalized_input"])
    assert torch.allclose(torch.stack([normalize(image) for image in images]), expected, atol=1e-6)


def test_classifier_features_and_logits(official_dir, reference_outputs, reference_meta):
    model = load_classifier(official_dir / "official_finetuned.pth")
    assert model.config.embed_dim == reference_meta["embed_dim"]
    assert model.config.depth == reference_meta["depth"]
    assert model.config.num_heads == reference_meta["num_heads"]
    assert model.config.num_classes == reference_meta["num_classes"]
    x = torch.from_numpy(reference_outputs["normalized_input"]).float()
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        direct = model(x)
    np.testing.assert_allclose(features.numpy(), reference_outputs["features"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits.numpy(), reference_outputs["logits"], atol=TOLERANCE, rtol=0)
    assert torch.equal(direct, logits)


def test_reconstruction_predictions_and_loss(official_dir, reference_outputs, reference_meta):
    model = load_pretrained(official_dir / "official_pretrained.pth")
    x = torch.from_numpy(reference_outputs["normalized_input"]).float()
    window = reference_meta["window_size"]
    for index, case in enumerate(reference_meta["recon_cases"]):
        image = x[case["image"]: case["image"] + 1]
        windows = torch.tensor([[[case["window_top"], case["window_left"]]]])
        mask = torch.zeros(1, 1, window * window, dtype=torch.bool)
        mask[0, 0, case["masked_positions_in_window"]] = True
        with torch.no_grad():
            pred = model.reconstruct_windows(image, windows, mask)
            loss = model.window_loss(image, windows, pred, mask)
        assert pred.shape == (1, 1, 49, 768)
        np.testing.assert_allclose(pred[0, 0].numpy(), reference_outputs["recon_pred"][index], atol=TOLERANCE, rtol=0)
        assert abs(loss.item() - float(reference_outputs["recon_loss"][index])) < TOLERANCE


def test_batched_reconstruction_equals_single_windows(official_dir, reference_outputs, reference_meta):
    """All four reference windows of one image in one call give the same predictions as one at a time."""
    model = load_pretrained(official_dir / "official_pretrained.pth")
    x = torch.from_numpy(reference_outputs["normalized_input"]).float()[:1]
    cases = [c for c in reference_meta["recon_cases"] if c["image"] == 0]
    windows = torch.tensor([[[c["window_top"], c["window_left"]] for c in cases]])
    mask = torch.zeros(1, len(cases), 49, dtype=torch.bool)
    for i, case in enumerate(cases):
        mask[0, i, case["masked_positions_in_window"]] = True
    with torch.no_grad():
        pred = model.reconstruct_windows(x, windows, mask)
    for i, _ in enumerate(cases):
        np.testing.assert_allclose(pred[0, i].numpy(), reference_outputs["recon_pred"][i], atol=TOLERANCE, rtol=0)
