"""--decode gpu: workers deliver JPEG bytes (other files decoded), the batch decodes and augments where it is sent.

No GPU here: the batched code path runs with device="cpu" (torchvision's CPU JPEG decoder instead of nvJPEG; the
same calls otherwise)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import image_files, pretrain_transform
from training.data.folders import seeded
from training.data.gpu_decode import EncodedBatch, EncodedImageDataset, decode_images, resolve_decode


def smooth_image(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return small.resize(size, Image.BICUBIC)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    smooth_image(0).save(tmp_path / "a.jpg", quality=95)
    smooth_image(1).save(tmp_path / "b.png")
    smooth_image(2).convert("L").save(tmp_path / "c.jpg", quality=95)  # grayscale JPEG: decoded in the worker
    return tmp_path


def dataset_of(folder: Path, size: int = 32) -> EncodedImageDataset:
    return EncodedImageDataset(image_files(folder, None).samples, size, 0.2)


def test_plain_rgb_jpegs_travel_encoded_and_the_rest_decoded(folder: Path):
    dataset = dataset_of(folder)
    by_name = {path.name: dataset[i][0] for i, (path, _) in enumerate(dataset.samples)}
    assert by_name["a.jpg"].ndim == 1 and bytes(by_name["a.jpg"][:2].tolist()) == b"\xff\xd8"
    assert by_name["b.png"].shape == (3, 72, 96) and by_name["b.png"].dtype == torch.uint8
    assert by_name["c.jpg"].shape == (3, 72, 96)


def test_batch_decodes_and_augments_to_normalised_tensors(folder: Path):
    dataset = dataset_of(folder)
    images, labels, skipped = dataset.collate([dataset[i] for i in range(len(dataset))])
    assert isinstance(images, EncodedBatch) and labels.tolist() == [-1, -1, -1] and skipped.tolist() == [0, 0, 0]
    torch.manual_seed(0)
    out = images.to("cpu")
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    torch.manual_seed(0)
    assert torch.equal(images.to("cpu"), out)  # the loop seeds torch per step: reproducible
    torch.manual_seed(1)
    assert not torch.equal(images.to("cpu"), out)


def test_same_crop_and_flip_as_the_cpu_pipeline(tmp_path: Path):
    """For one seed both paths draw the same crop box and flip; pixels differ only by resampling details."""
    smooth_image(3, (200, 150)).save(tmp_path / "x.jpg", quality=95)
    size = 64
    cpu_dataset = image_files(tmp_path, pretrain_transform(size, 0.2))
    gpu_dataset = dataset_of(tmp_path, size)
    for seed in range(4):
        with seeded(seed):
            expected = cpu_dataset.transform(cpu_dataset.load(cpu_dataset.samples[0][0]))
        with seeded(seed):
            actual = EncodedBatch([gpu_dataset[0][0]], size, 0.2).to("cpu")[0]
        assert (actual - expected).abs().mean() < 0.02  # normalised units; a wrong flip or box gives ~1


def test_a_corrupt_jpeg_in_the_batch_is_replaced(folder: Path, caplog):
    good = dataset_of(folder)[0][0]
    broken = good.clone()[: len(good) // 3]
    with caplog.at_level(logging.WARNING):
        decoded = decode_images([good, broken], torch.device("cpu"))
    assert len(decoded) == 2 and torch.equal(decoded[1], decoded[0])
    assert "undecodable" in caplog.text or "failed" in caplog.text


def test_gpu_decode_falls_back_to_cpu_without_cuda(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has none; on a GPU host too
    with caplog.at_level(logging.WARNING):
        assert resolve_decode("gpu") == "cpu"
    assert "decoding JPEGs on the CPU" in caplog.text
    assert resolve_decode("cpu") == "cpu"
