"""GPU JPEG decoding for pretraining (`--decode gpu`): workers only read files, the GPU decodes and augments.

Workers return the encoded bytes of plain RGB JPEGs (no EXIF rotation) and decode anything else on the CPU with
the dataset's own loading rules (`ImageDataset.load`), so both paths see the same pixels. A batch is an
`EncodedBatch`; the training loop's `images.to(device)` decodes the JPEGs together with nvJPEG
(`torchvision.io.decode_jpeg(list, device="cuda")`) and applies the pretraining augmentation of
`training.data.transforms.pretrain_transform` on the GPU: RandomResizedCrop (bicubic, antialiased), horizontal flip,
scaling to [0, 1], ImageNet normalisation. Crop and flip parameters come from torch's CPU generator, which the loop
seeds per step, so runs stay reproducible and resumable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from training.data.folders import ImageDataset
from training.data.transforms import pretrain_transform

log = logging.getLogger(__name__)

EXIF_ORIENTATION = 0x0112


def resolve_decode(decode: str) -> str:
    """'gpu' when asked for and CUDA is present; otherwise 'cpu' (with a warning if 'gpu' was asked for)."""
    if decode == "gpu" and not torch.cuda.is_available():
        log.warning("--decode gpu needs CUDA, which is not available: decoding JPEGs on the CPU instead")
        return "cpu"
    return decode


class EncodedImageDataset(ImageDataset):
    """Like ImageDataset, but a sample's image is either the JPEG file's bytes, uint8 (N,), or, for every other
    file, the image decoded by `ImageDataset.load`, uint8 (3, H, W). No transform runs in the worker."""

    def __init__(self, samples: list[tuple[Path, int]], size: int, min_scale: float, seed: int = 0) -> None:
        super().__init__(samples, transform=None, seed=seed)
        self.size, self.min_scale = size, min_scale

    def load(self, path: Path) -> torch.Tensor:  # type: ignore[override]
        with Image.open(path) as image:
            plain_jpeg = (image.format == "JPEG" and image.mode == "RGB"
                          and image.getexif().get(EXIF_ORIENTATION, 1) == 1)
        if plain_jpeg:
            return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        decoded = super().load(path)
        return torch.from_numpy(np.asarray(decoded).copy()).permute(2, 0, 1).contiguous()

    def collate(self, samples: list[tuple[torch.Tensor, int, int]]) -> tuple["EncodedBatch", torch.Tensor, torch.Tensor]:
        """DataLoader collate_fn: (EncodedBatch, labels (B,), skipped (B,))."""
        images, labels, skipped = zip(*samples)
        return EncodedBatch(list(images), self.size, self.min_scale), torch.tensor(labels), torch.tensor(skipped)


def decode_images(items: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Encoded JPEGs (1-d) and decoded images (3-d), uint8 on the CPU -> decoded uint8 (3, H, W) on `device`.

    The JPEGs are decoded in one batched call; if that fails (a corrupt file), each is decoded on its own on the CPU,
    and an undecodable one is replaced by the previous good image of the batch (batch shapes stay fixed)."""
    out: list[torch.Tensor | None] = [None] * len(items)
    jpeg_index = [i for i, item in enumerate(items) if item.ndim == 1]
    for i, item in enumerate(items):
        if item.ndim == 3:
            out[i] = item.to(device, non_blocking=True)
    if jpeg_index:
        try:
            decoded = decode_jpeg([items[i] for i in jpeg_index], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpeg_index, decoded):
                out[i] = image
        except RuntimeError as exc:
            log.warning("batched JPEG decoding failed (%s): decoding one by one on the CPU", exc)
            for i in jpeg_index:
                try:
                    out[i] = decode_jpeg(items[i], mode=ImageReadMode.RGB).to(device)
                except RuntimeError as single:
                    log.warning("skipping an undecodable JPEG in the batch: %s", single)
    good = [image for image in out if image is not None]
    if not good:
        raise RuntimeError("no decodable image in the batch")
    last = good[0]
    for i, image in enumerate(out):
        out[i] = last = image if image is not None else last
    return out  # type: ignore[return-value]


def random_resized_crop(images: list[torch.Tensor], size: int, min_scale: float) -> torch.Tensor:
    """uint8 (3, H_i, W_i) images -> float (B, 3, size, size): the steps of `pretrain_transform` (its crop range,
    flip probability and normalisation), as tensor operations on the images' device."""
    crop_step, flip_step, _, normalize = pretrain_transform(size, min_scale).transforms
    crops = []
    for image in images:
        top, left, height, width = crop_step.get_params(image, crop_step.scale, crop_step.ratio)
        crop = image[None, :, top:top + height, left:left + width].float()  # (1, 3, h, w), 0..255
        crop = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        if torch.rand(1).item() < flip_step.p:  # the draw RandomHorizontalFlip makes
            crop = crop.flip(-1)
        crops.append(crop)
    batch = torch.cat(crops).clamp_(0, 255).round_() / 255.0  # (B, 3, S, S): the uint8 grid, as ToTensor sees it
    mean = torch.tensor(normalize.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(normalize.std, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


@dataclass
class EncodedBatch:
    """A batch as the workers deliver it; `.to(device)` decodes and augments it there -> float (B, 3, S, S)."""

    items: list[torch.Tensor]  # uint8: encoded JPEG (N,) or decoded (3, H, W), on the CPU
    size: int
    min_scale: float

    def to(self, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
        return random_resized_crop(decode_images(self.items, torch.device(device)), self.size, self.min_scale)

    def __len__(self) -> int:
        return len(self.items)
