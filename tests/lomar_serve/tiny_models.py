"""Tiny models and data for the tests that train, export and serve: synthetic image sets, a fast training recipe,
random tiny classifiers and reconstruction models exported into a repository."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.synth import write_synthetic

# lomar_tiny_patch16 cut to 2 blocks at 112 px (a 7x7 patch grid): seconds per epoch on a busy CPU.
TINY_MODEL = {"model": "lomar_tiny_patch16", "model_options": {"depth": 2}}
TINY_OPTIONS = {"image_size": 112, "batch_size": 8, "num_workers": 0, "mixup": 0.0, "cutmix": 0.0,
                "auto_augment": "", "reprob": 0.0, "warmup_epochs": 0.0, "device": "cpu", "blr": 0.02,
                "log_every": 1, "save_every_epochs": 0}


def synthetic_set(root: Path, classes: int = 3, per_class: int = 8, val_per_class: int = 4, seed: int = 0,
                  rename: dict[str, str] | None = None) -> Path:
    """root/train/CLASS and root/val/CLASS of 64x64 PNGs; `rename` renames class folders (new classes)."""
    for split, count, offset in (("train", per_class, 0), ("val", val_per_class, 1)):
        write_synthetic(root / split, classes, count, 64, seed + offset)
        for old, new in (rename or {}).items():
            (root / split / old).rename(root / split / new)
    return root


def export_tiny(repository: Path, work: Path, classes: list[str], seed: int, image_size: int = 112,
                name: str = "lomar_classifier", **architecture: Any) -> int:
    """A random tiny classifier with these class names, exported as the next version of `name`; its number.
    `architecture`: LoMaRConfig overrides (default: ViT-Tiny, depth 1)."""
    import torch

    from export.pipeline import ExportOptions, export_checkpoint
    from training.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model("lomar_tiny_patch16", **{"depth": 1, **architecture}, img_size=image_size,
                         num_classes=len(classes)).eval()
    checkpoint = work / f"tiny-{seed}-{image_size}.pth"
    save_checkpoint(checkpoint, model, class_names=list(classes))
    published = export_checkpoint(ExportOptions(checkpoint=checkpoint, task="classify", out=repository, name=name,
                                                max_batch_size=8))
    return published.version


def export_tiny_reconstruction(repository: Path, work: Path, seed: int = 0) -> int:
    """A random tiny pretrainer at 112 px (7x7 grid), exported as lomar_reconstruction (the gateway's default)."""
    import torch

    from export.pipeline import ExportOptions, export_checkpoint
    from training.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=1, img_size=112).eval()
    checkpoint = work / f"tiny-pretrained-{seed}.pth"
    save_checkpoint(checkpoint, model)
    published = export_checkpoint(ExportOptions(checkpoint=checkpoint, task="reconstruct", out=repository,
                                                max_batch_size=8))
    return published.version
