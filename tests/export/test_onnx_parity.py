"""Exported ONNX files, run by ONNX Runtime, against the paper's reference outputs and PyTorch."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.pipeline import ExportOptions, export_checkpoint
from export.verify import FP16_RELATIVE_TOLERANCE
from training.models import load_pretrained

TOLERANCE = 1e-4


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_reference_windows(model_path, reference_outputs, reference_meta, atol: float) -> None:
    """A 112 px reconstruction graph, given a 7 x 7-patch crop around each reference window and its mask, predicts
    the patches the paper's code predicted (within `atol`)."""
    run = session(model_path)
    for index, case in enumerate(reference_meta["recon_cases"]):
        top, left = case["window_top"] * 16, case["window_left"] * 16
        crop = reference_outputs["images_uint8"][case["image"], :, top:top + 112, left:left + 112]
        mask = np.zeros((1, 49), dtype=bool)
        mask[0, case["masked_positions_in_window"]] = True
        patches, _ = run.run(None, {"image": np.ascontiguousarray(crop[None]), "mask": mask.reshape(1, 7, 7)})
        np.testing.assert_allclose(patches[0], reference_outputs["recon_pred"][index], atol=atol, rtol=0)


def test_onnx_graph_is_valid_with_a_dynamic_batch_axis(official_classifier):
    model = onnx.load(str(official_classifier.path / "model.onnx"))
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    image = model.graph.input[0]
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 224, 224]


def test_classifier_matches_reference_logits_and_features(official_classifier, reference_outputs):
    images = reference_outputs["images_uint8"]  # batch 3: neither the example's nor a verification size
    logits, embedding = session(official_classifier.path / "model.onnx").run(None, {"image": images})
    np.testing.assert_allclose(logits, reference_outputs["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(embedding, reference_outputs["features"], atol=TOLERANCE, rtol=0)


def test_classifier_card_records_parity_and_source(official_classifier, official_dir, reference_meta):
    card = json.loads((official_classifier.path / "model_card.json").read_text())
    expected = hashlib.sha256((official_dir / "official_finetuned.pth").read_bytes()).hexdigest()
    assert card["source_sha256"] == expected and card["source_checkpoint"] == "official_finetuned.pth"
    assert card["architecture"]["depth"] == reference_meta["depth"]
    assert card["image_size"] == [reference_meta["img_size"]] * 2
    assert card["classes"] == [f"class_{i}" for i in range(reference_meta["num_classes"])]
    batches = card["parity"]["onnxruntime"]["batches"]
    assert [b["batch_size"] for b in batches] == [1, 8]
    assert all(o["max_abs_diff"] <= TOLERANCE for b in batches for o in b["outputs"].values())


def test_reconstruction_matches_pytorch_windows(official_reconstruction, official_dir):
    model = load_pretrained(official_dir / "official_pretrained.pth")
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 3, 224, 224), dtype=np.uint8)
    mask = rng.random((3, 14, 14)) < 0.8
    patches, reconstruction = session(official_reconstruction.path / "model.onnx").run(
        None, {"image": images, "mask": mask})
    assert patches.shape == (3, 196, 768) and reconstruction.shape == (3, 3, 224, 224)
    x = (torch.from_numpy(images).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    tops = [(0, 0), (0, 7), (7, 0), (7, 7)]  # a 14 x 14 grid is tiled exactly by four 7 x 7 windows
    windows = torch.tensor([tops] * 3)
    window_mask = torch.stack([torch.from_numpy(mask[:, t:t + 7, l:l + 7]).reshape(3, 49) for t, l in tops], 1)
    with torch.no_grad():
        pred = model.reconstruct_windows(x, windows, window_mask)  # (3, 4, 49, 768)
    for index, (top, left) in enumerate(tops):
        for cell in range(49):
            row, col = top + cell // 7, left + cell % 7
            np.testing.assert_allclose(patches[:, row * 14 + col], pred[:, index, cell].numpy(),
                                       atol=TOLERANCE, rtol=0)


def test_reconstruction_matches_reference_windows(official_dir, reference_outputs, reference_meta, tmp_path):
    """A 7 x 7-patch crop around each reference window, exported at 112 px, reproduces the paper's predictions."""
    published = export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth",
                                                task="reconstruct", out=tmp_path, image_size=112))
    assert_reference_windows(published.path / "model.onnx", reference_outputs, reference_meta, TOLERANCE)


def test_fp16_export_matches_reference_within_its_tolerance(official_dir, reference_outputs, tmp_path):
    """The fp16 graph on the CPU provider: fp32 I/O, fp16 weights; on the reference images of the fp32 test within
    FP16_RELATIVE_TOLERANCE with the same top-1 classes; its card records both graphs' parity on the same inputs."""
    published = export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                                out=tmp_path, precision="fp16"))
    run = session(published.path / "model.onnx")
    assert run.get_inputs()[0].type == "tensor(uint8)"
    assert [o.type for o in run.get_outputs()] == ["tensor(float)", "tensor(float)"]
    initializers = onnx.load(str(published.path / "model.onnx")).graph.initializer
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in initializers)

    logits, embedding = run.run(None, {"image": reference_outputs["images_uint8"]})
    for got, expected in ((logits, reference_outputs["logits"]), (embedding, reference_outputs["features"])):
        assert np.abs(got - expected).max() <= FP16_RELATIVE_TOLERANCE * np.abs(expected).max()
    assert (logits.argmax(1) == reference_outputs["logits"].argmax(1)).all()

    card = json.loads((published.path / "model_card.json").read_text())
    fp16, fp32 = card["parity"]["onnxruntime"], card["parity"]["onnxruntime_fp32"]
    assert card["precision"] == "fp16" and fp16["precision"] == "fp16" and fp32["precision"] == "fp32"
    assert fp16["relative_tolerance"] == FP16_RELATIVE_TOLERANCE and fp16["conversion"]["inputs_outputs"]
    assert [b["batch_size"] for b in fp16["batches"]] == [b["batch_size"] for b in fp32["batches"]] == [1, 8]
    for batch in fp16["batches"]:
        assert batch["top1_agreement"] == 1.0
        assert all(o["max_rel_diff"] <= FP16_RELATIVE_TOLERANCE and o["min_cosine"] >= 0.999
                   for o in batch["outputs"].values())
    assert all(o["max_abs_diff"] <= TOLERANCE for b in fp32["batches"] for o in b["outputs"].values())


@pytest.mark.parametrize("batch", [1, 5, 16])
def test_tiny_export_runs_at_any_batch_size(tiny_classifier, batch):
    images = np.random.default_rng(batch).integers(0, 256, (batch, 3, 112, 112), dtype=np.uint8)
    logits, embedding = session(tiny_classifier.path / "model.onnx").run(None, {"image": images})
    assert logits.shape == (batch, 3) and embedding.shape == (batch, 192)
