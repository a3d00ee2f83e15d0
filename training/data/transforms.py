"""Image transforms: decoded RGB image (`contracts.preprocessing.load_rgb`) -> ImageNet-normalised float (3, S, S).

Training augmentations start from the RGB image the contract decodes (EXIF applied, alpha on white, 16-bit
scaled...). Evaluation is the serving model's input exactly: the contract's uint8 resize + centre crop, then the
same float conversion and normalisation as the exported graph (`export.wrappers.ImageNormalize`).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from contracts.preprocessing import CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD, DecodeOptions, resize_crop


def pretrain_transform(size: int, min_scale: float) -> T.Compose:
    """The paper's pretraining augmentation: RandomResizedCrop(scale min_scale..1) + horizontal flip only."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def finetune_transform(size: int, auto_augment: str, reprob: float):
    """timm's training transform: RandomResizedCrop, flip, RandAugment, random erasing (per-pixel)."""
    return create_transform(
        input_size=size, is_training=True, auto_augment=auto_augment or None, interpolation="bicubic",
        re_prob=reprob, re_mode="pixel", re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )


class EvalTransform:
    """Evaluation: the served model's input, UINT8 (3, S, S) from `contracts.preprocessing.resize_crop`, then
    float and ImageNet normalisation -> float32 (3, S, S).

    `decode_options` tells the dataset to decode for this size (JPEG draft mode and limits), as the gateway does,
    so evaluation sees byte-identical inputs to serving.
    """

    def __init__(self, size: int, crop_fraction: float = CROP_FRACTION) -> None:
        self.decode_options = DecodeOptions(size=(size, size), crop_fraction=crop_fraction)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def model_input(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> uint8 (3, S, S), the array the gateway sends to Triton."""
        return torch.from_numpy(np.ascontiguousarray(resize_crop(image, self.decode_options)))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (3, S, S) -> float32 (3, S, S): x / 255, minus the mean, over the std (as the exported graph)."""
        return (pixels.float() / 255.0 - self.mean) / self.std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.model_input(image))
