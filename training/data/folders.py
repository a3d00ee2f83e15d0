"""Image-folder datasets: any folder of images (recursive, unlabelled) and the ImageFolder layout (labelled).

Which files are images and what a class folder is: `contracts.datasets`. Every image is decoded by
`contracts.preprocessing.load_rgb` (EXIF orientation, alpha on white, 16-bit, palette, CMYK), exactly as the
gateway decodes uploads; a transform that declares `decode_options` (the evaluation transform) gets the image
decoded for its model size, as served.

Unreadable images never crash a run: a sample that fails to decode is replaced by the next readable one (so batch
shapes stay fixed under DDP), its path is logged once per process, and every sample reports how many unreadable
files were skipped to produce it, so the training loop can count them.

Augmentation randomness is a pure function of (seed, epoch, index): `__getitem__` seeds Python, NumPy and torch
from it in a forked RNG scope. Data order and augmentation then do not depend on worker count or on where a
resumed run restarts.
"""
from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from contracts import datasets
from contracts.preprocessing import IMAGE_EXTENSIONS, ImageError, load_rgb
from training.errors import DataError

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, int, int]  # (image (3, H, W), label (-1 when unlabelled), unreadable files skipped)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed random, numpy and torch (CPU) for the block, restoring the caller's RNG states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ImageDataset(Dataset):
    """A list of (path, label) decoded to RGB by the preprocessing contract and transformed; epoch-seeded
    augmentation."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Callable | None, seed: int = 0) -> None:
        if not samples:
            raise DataError("no images found")
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self._reported: set[Path] = set()

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch, before the loader's iterator (and its workers) are created."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: Path) -> Image.Image:
        """RGB, upright; decoded for the transform's model input when it declares `decode_options`, else at full
        resolution (augmentations crop from it).

        Raises:
            contracts.preprocessing.ImageError: unreadable, unsupported or too large.
        """
        return load_rgb(path, getattr(self.transform, "decode_options", None))

    def __getitem__(self, index: int) -> Sample:
        for skipped in range(len(self.samples)):
            path, label = self.samples[(index + skipped) % len(self.samples)]
            try:
                image = self.load(path)
            except ImageError as exc:
                if path not in self._reported:
                    self._reported.add(path)
                    log.warning("skipping unreadable image %s: %s", path, exc.message)
                continue
            if self.transform is not None:
                with seeded(hash((self.seed, self.epoch, index)) & (2**62 - 1)):
                    image = self.transform(image)
            return image, label, skipped
        raise DataError("no readable image in the dataset")


def find_images(root: str | Path, roots: Sequence[Path] | None = None) -> list[Path]:
    """The images under `root` (`contracts.datasets.image_files`); with resolved `roots` (`--data-roots`), an
    image resolving outside them is a DataError naming it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    try:
        return datasets.image_files(root, roots)
    except datasets.OutsideDataRoots as exc:
        raise DataError(str(exc)) from None


def image_files(root: str | Path, transform: Callable | None, seed: int = 0,
                roots: Sequence[Path] | None = None) -> ImageDataset:
    """Every image under `root`, recursively; labels ignored (-1). For pretraining. `roots`: see find_images."""
    paths = find_images(root, roots)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return ImageDataset([(path, -1) for path in paths], transform, seed)


def find_classes(root: str | Path, roots: Sequence[Path] | None = None) -> list[str]:
    """The class folders of `root`; with resolved `roots` (`--data-roots`), one resolving outside them is a
    DataError naming it (its name would become a label, images or not)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    try:
        classes = datasets.class_names(root, roots)
    except datasets.OutsideDataRoots as exc:
        raise DataError(str(exc)) from None
    if not classes:
        raise DataError(f"{root} has no class sub-folders (expected ImageFolder layout: ROOT/CLASS/IMAGE)")
    return classes


def image_folder(
    root: str | Path, transform: Callable | None, seed: int = 0, classes: list[str] | None = None,
    roots: Sequence[Path] | None = None,
) -> tuple[ImageDataset, list[str]]:
    """ImageFolder layout (ROOT/CLASS/.../IMAGE): dataset with labels = index into the sorted class names.

    `classes` pins the label order (a validation split must use the training split's classes); `roots`: see
    find_images.
    """
    found = find_classes(root, roots)
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has classes the training data lacks: {', '.join(unknown)}")
    samples = [
        (path, label) for label, name in enumerate(classes) if (Path(root) / name).is_dir()
        for path in find_images(Path(root) / name, roots)
    ]
    if not samples:
        raise DataError(f"no images under the class folders of {root}")
    return ImageDataset(samples, transform, seed), classes
