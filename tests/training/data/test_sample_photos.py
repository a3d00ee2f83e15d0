"""The offline photo set built from scikit-image's sample photographs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data.sample_photos import PHOTOS, write_sample_photos


def test_writes_one_folder_per_photo_with_real_jpegs(tmp_path):
    names = write_sample_photos(tmp_path, per_class=2, size=64, seed=1)
    assert names == sorted(PHOTOS)
    for name in names:
        files = sorted((tmp_path / name).iterdir())
        assert len(files) == 2
        with Image.open(files[0]) as image:
            assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"


def test_views_vary_and_are_reproducible(tmp_path):
    write_sample_photos(tmp_path / "a", per_class=2, size=32, seed=5)
    write_sample_photos(tmp_path / "b", per_class=2, size=32, seed=5)
    first = np.asarray(Image.open(tmp_path / "a" / "cat" / "00000.jpg"))
    second = np.asarray(Image.open(tmp_path / "a" / "cat" / "00001.jpg"))
    again = np.asarray(Image.open(tmp_path / "b" / "cat" / "00000.jpg"))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, again)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        write_sample_photos(tmp_path, per_class=0, size=64)


def test_cli_writes_train_and_val(tmp_path):
    from training.data.cli import main

    assert main(["photos", "--out", str(tmp_path), "--per-class", "1", "--val-per-class", "1", "--size", "32"]) == 0
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(PHOTOS)
    assert len(list((tmp_path / "val" / "cat").iterdir())) == 1
