"""The dataset folder convention: which files are images, class folders, train/val splits."""
from __future__ import annotations

from contracts.datasets import (
    TRAIN_SPLIT, VAL_SPLIT, class_names, has_splits, image_files, is_image_file, train_dir, val_dir,
)
from contracts.preprocessing import IMAGE_EXTENSIONS


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_image_files_by_accepted_extension_any_case_hidden_skipped(tmp_path):
    wanted = [_touch(tmp_path / "a" / "1.JPG"), _touch(tmp_path / "a" / "deep" / "2.png"),
              _touch(tmp_path / "b" / "3.gif"), _touch(tmp_path / "b" / "4.webp")]
    _touch(tmp_path / "a" / "notes.txt")
    _touch(tmp_path / "a" / "._1.JPG")  # macOS resource fork
    _touch(tmp_path / ".cache" / "5.png")
    _touch(tmp_path / "b" / "6.ico")  # Pillow reads it, the contract does not accept it
    assert image_files(tmp_path) == sorted(wanted)
    assert image_files(tmp_path / "missing") == []


def test_every_accepted_extension_is_an_image(tmp_path):
    for extension in IMAGE_EXTENSIONS:
        assert is_image_file(_touch(tmp_path / f"x{extension.upper()}"))
    (tmp_path / "folder.png").mkdir()
    assert not is_image_file(tmp_path / "folder.png")


def test_class_names_sorted_without_hidden(tmp_path):
    for name in ("dog", "cat", ".git"):
        (tmp_path / name).mkdir()
    _touch(tmp_path / "readme.png")
    assert class_names(tmp_path) == ["cat", "dog"]


def test_splits(tmp_path):
    assert train_dir(tmp_path) == tmp_path and val_dir(tmp_path) is None and not has_splits(tmp_path)
    (tmp_path / TRAIN_SPLIT).mkdir()
    assert train_dir(tmp_path) == tmp_path / "train" and not has_splits(tmp_path)
    (tmp_path / VAL_SPLIT).mkdir()
    assert val_dir(tmp_path) == tmp_path / "val" and has_splits(tmp_path)
