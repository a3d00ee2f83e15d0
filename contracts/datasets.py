"""The dataset folder convention shared by training, evaluation and retrain jobs.

    DATA_DIR/train/CLASS/.../IMAGE     training images, labelled by their class folder
    DATA_DIR/val/CLASS/.../IMAGE       validation images (same class names)

A folder without `train/` is all training data (DATA_DIR/CLASS/IMAGE, or any tree of images for pretraining,
which ignores labels). An image is a file with one of the extensions of the accepted formats
(`contracts.preprocessing.IMAGE_EXTENSIONS`, any case); hidden files and folders (names starting with ".",
such as macOS's "._photo.jpg") are ignored. Class names are the sorted names of the class folders; a label is
an index into them.

Data roots: a program that must not read outside some folders (a retrain job: `--data-roots`, the gateway's
LOMAR_DATA_ROOTS) lists with `roots`; every image and every class folder must then resolve (symlinks followed,
`..` collapsed) inside one of them. Without `roots` symlinked images and class folders are followed wherever they point (a legitimate
way to assemble a data set from several disks).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from contracts.preprocessing import IMAGE_EXTENSIONS

TRAIN_SPLIT = "train"
VAL_SPLIT = "val"


def is_image_file(path: Path) -> bool:
    """An image by its name (any case of an accepted extension), not hidden, and a regular file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


class OutsideDataRoots(ValueError):
    """An image whose resolved path leaves the data roots (a symlink pointing elsewhere)."""


def parse_roots(text: str) -> tuple[Path, ...]:
    """Data roots written as one string, separated by os.pathsep (as LOMAR_DATA_ROOTS), each resolved."""
    return resolve_roots(part for part in text.split(os.pathsep) if part)


def resolve_roots(roots: Iterable[str | Path]) -> tuple[Path, ...]:
    """Each root with "~" expanded and symlinks resolved (what `within` compares against)."""
    return tuple(Path(root).expanduser().resolve() for root in roots)


def within(resolved: Path, roots: Sequence[Path]) -> bool:
    """Whether an already resolved path is one of the resolved `roots` or lies under one."""
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def image_files(root: str | Path, roots: Sequence[Path] | None = None) -> list[Path]:
    """Every image under `root`, recursively, sorted; hidden folders skipped. [] when `root` is not a folder.

    roots: resolved data roots (`resolve_roots`); None = no confinement. With roots, an image that resolves
    outside them is an OutsideDataRoots error naming its path relative to `root`. Refused rather than skipped:
    a job that silently trains on fewer images than its data set holds is a worse surprise than one that stops
    and says which file to fix.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    files = sorted(path for path in root.rglob("*")
                   if is_image_file(path) and not _hidden(path.relative_to(root).parent))
    if roots is not None:
        _confine("image", files, root, roots)
    return files


def class_names(root: str | Path, roots: Sequence[Path] | None = None) -> list[str]:
    """The class folders of `root` (sorted, hidden ones skipped). [] when `root` is not a folder.

    roots: resolved data roots; None = no confinement. With roots, a class folder that resolves outside them is an
    OutsideDataRoots error, as an image is: its name would become a label even when it holds no image (an empty
    folder symlinked out of the roots would add a class, and change the model's head).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if roots is not None:
        _confine("class folder", [root / name for name in names], root, roots)
    return names


def _confine(kind: str, paths: Iterable[Path], root: Path, roots: Sequence[Path]) -> None:
    """OutsideDataRoots for the first of `paths` (under `root`) that resolves outside the resolved `roots`."""
    for path in paths:
        if not within(path.resolve(), roots):
            raise OutsideDataRoots(f"{kind} {path.relative_to(root)} under {root} resolves outside the data roots "
                                   f"({', '.join(map(str, roots)) or 'none'}): symlinks must stay inside them")


def train_dir(data_dir: str | Path) -> Path:
    """DATA_DIR/train when present, else DATA_DIR itself."""
    split = Path(data_dir) / TRAIN_SPLIT
    return split if split.is_dir() else Path(data_dir)


def val_dir(data_dir: str | Path) -> Path | None:
    """DATA_DIR/val when present, else None."""
    split = Path(data_dir) / VAL_SPLIT
    return split if split.is_dir() else None


def has_splits(data_dir: str | Path) -> bool:
    """Both DATA_DIR/train and DATA_DIR/val present."""
    return (Path(data_dir) / TRAIN_SPLIT).is_dir() and (Path(data_dir) / VAL_SPLIT).is_dir()


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
