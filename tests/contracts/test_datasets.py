"""The dataset folder convention: which files are images, class folders, train/val splits."""
from __future__ import annotations

import os
import re

import pytest

from contracts.datasets import (
    TRAIN_SPLIT, VAL_SPLIT, OutsideDataRoots, class_names, has_splits, image_files, is_image_file, parse_roots,
    resolve_roots, train_dir, val_dir, within,
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


def _escaping_set(tmp_path):
    """root/set/{a,b}/*.png inside the data root, plus an image and a class folder that are symlinks leading out."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    inside = [_touch(root / "set" / "a" / "1.png"), _touch(root / "set" / "b" / "2.png")]
    _touch(outside / "secret.png")
    _touch(outside / "cls" / "3.png")
    return root, outside, inside


def test_image_files_inside_the_data_roots_are_listed(tmp_path):
    root, outside, inside = _escaping_set(tmp_path)
    (root / "set" / "b" / "same.png").symlink_to(inside[0])  # a symlink that stays inside is fine
    roots = resolve_roots([root])
    assert image_files(root / "set", roots) == sorted([*inside, root / "set" / "b" / "same.png"])
    assert image_files(root / "set" / "a", parse_roots(f"{outside}{os.pathsep}{root}")) == inside[:1]


def test_an_image_symlinked_out_of_the_roots_is_refused_by_its_relative_path(tmp_path):
    root, outside, _ = _escaping_set(tmp_path)
    (root / "set" / "a" / "leak.png").symlink_to(outside / "secret.png")
    with pytest.raises(OutsideDataRoots, match=f"image a/leak.png under {re.escape(str(root / 'set'))} resolves "
                                               "outside the data roots"):
        image_files(root / "set", resolve_roots([root]))
    assert root / "set" / "a" / "leak.png" in image_files(root / "set")  # no roots (a user's own run): followed


def test_a_class_folder_symlinked_out_of_the_roots_is_refused(tmp_path):
    """Training lists each class folder on its own (DATA_DIR/CLASS): a symlinked class folder leading out."""
    root, outside, _ = _escaping_set(tmp_path)
    (root / "set" / "c").symlink_to(outside / "cls", target_is_directory=True)
    assert class_names(root / "set") == ["a", "b", "c"]
    with pytest.raises(OutsideDataRoots, match="image 3.png under .*/set/c resolves outside"):
        image_files(root / "set" / "c", resolve_roots([root]))
    assert image_files(root / "set" / "c") == [root / "set" / "c" / "3.png"]


def test_an_empty_class_folder_symlinked_out_of_the_roots_is_refused(tmp_path):
    """It holds no image for image_files to refuse, yet its name is a label."""
    root, outside, _ = _escaping_set(tmp_path)
    (outside / "empty").mkdir()
    (root / "set" / "c").symlink_to(outside / "empty", target_is_directory=True)
    with pytest.raises(OutsideDataRoots, match=f"class folder c under {re.escape(str(root / 'set'))} resolves "
                                               "outside the data roots"):
        class_names(root / "set", resolve_roots([root]))
    assert class_names(root / "set") == ["a", "b", "c"]  # no roots (a user's own run): followed
    (root / "set" / "d").symlink_to(root / "set" / "a", target_is_directory=True)  # inside the roots: fine
    (root / "set" / "c").unlink()
    assert class_names(root / "set", resolve_roots([root])) == ["a", "b", "d"]


def test_within_compares_resolved_paths(tmp_path):
    roots = resolve_roots([tmp_path / "a"])
    assert within(roots[0], roots) and within(roots[0] / "x" / "y.png", roots)
    assert not within(roots[0].parent / "ab" / "y.png", roots)  # a sibling sharing the prefix is outside
    assert not within(roots[0] / "x", ())
