"""Image transforms: PIL RGB image -> ImageNet-normalised float tensor (3, S, S)."""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import transforms as T


def pretrain_transform(size: int, min_scale: float) -> T.Compose:
    """The paper's pretraining augmentation: RandomResizedCrop(scale min_scale..1) + horizontal flip only."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def finetune_transform(size: int, auto_augment: str, reprob: float):
    """timm's training transform: RandomResizedCrop, flip, RandAugment, random erasing (per-pixel)."""
    return create_transform(
        input_size=size, is_training=True, auto_augment=auto_augment or None, interpolation="bicubic",
        re_prob=reprob, re_mode="pixel", re_count=1, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
    )


def eval_transform(size: int, crop_pct: float = 0.875) -> T.Compose:
    """Resize the short side to size / crop_pct, centre crop `size`, normalise."""
    return T.Compose([
        T.Resize(int(size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])
