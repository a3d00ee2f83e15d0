"""The dataset folder convention shared by training, evaluation and retrain jobs.

    DATA_DIR/train/CLASS/.../IMAGE     training images, labelled by their class folder
    DATA_DIR/val/CLASS/.../IMAGE       validation images (same class names)

A folder without `train/` is all training data (DATA_DIR/CLASS/IMAGE, or any tree of images for pretraining,
which ignores labels). An image is a file with one of the extensions of the accepted formats
(`contracts.preprocessing.IMAGE_EXTENSIONS`, any case); hidden files and folders (names starting with ".",
such as macOS's "._photo.jpg") are ignored. Class names are the sorted names of the class folders; a label is
an index into them.
"""
from __future__ import annotations

from pathlib import Path

from contracts.preprocessing import IMAGE_EXTENSIONS

TRAIN_SPLIT = "train"
VAL_SPLIT = "val"


def is_image_file(path: Path) -> bool:
    """An image by its name (any case of an accepted extension), not hidden, and a regular file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def image_files(root: str | Path) -> list[Path]:
    """Every image under `root`, recursively, sorted; hidden folders skipped. [] when `root` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(path for path in root.rglob("*")
                  if is_image_file(path) and not _hidden(path.relative_to(root).parent))


def class_names(root: str | Path) -> list[str]:
    """The class folders of `root` (sorted, hidden ones skipped). [] when `root` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))


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
