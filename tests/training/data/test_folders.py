"""Image-folder datasets: recursive discovery, ImageFolder labels, unreadable files skipped and counted,
augmentation a function of (seed, epoch, index)."""
from __future__ import annotations

import shutil

import pytest
import torch

from contracts.datasets import resolve_roots
from training.data import DataError, image_files, image_folder, pretrain_transform
from training.data import EvalTransform


def test_recursive_unlabelled_and_labelled(synth_dir):
    unlabelled = image_files(synth_dir, None)
    assert len(unlabelled) == 32 and {label for _, label in unlabelled.samples} == {-1}
    labelled, classes = image_folder(synth_dir, EvalTransform(32))
    assert len(classes) == 4 and classes == sorted(classes)
    image, label, skipped = labelled[9]
    assert image.shape == (3, 32, 32) and label == 1 and skipped == 0


def test_unreadable_image_is_skipped_and_counted(tmp_path, synth_dir, caplog):
    shutil.copytree(synth_dir / "class_000_circle", tmp_path / "a")
    bad = tmp_path / "a" / "00000.png"
    bad.write_bytes(b"not an image at all")
    dataset = image_files(tmp_path, EvalTransform(32))
    image, _, skipped = dataset[0]
    assert skipped == 1 and image.shape == (3, 32, 32)
    assert "skipping unreadable image" in caplog.text and str(bad) in caplog.text


def test_missing_or_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        image_files(tmp_path / "nope", None)
    with pytest.raises(DataError, match="no images"):
        image_files(tmp_path, None)
    with pytest.raises(DataError, match="no class sub-folders"):
        image_folder(tmp_path, None)


def test_data_roots_refuse_symlinks_leading_out(tmp_path, synth_dir):
    """With --data-roots (retrain jobs), an image or class folder symlinked out of the roots stops the run."""
    root = tmp_path / "root"
    shutil.copytree(synth_dir / "class_000_circle", root / "set" / "a")
    roots = resolve_roots([root])
    assert len(image_folder(root / "set", None, roots=roots)[0]) == 8
    (root / "set" / "b").symlink_to(synth_dir / "class_001_square", target_is_directory=True)
    with pytest.raises(DataError, match="class folder b under .*/set resolves outside the data roots"):
        image_folder(root / "set", None, roots=roots)
    assert len(image_folder(root / "set", None)[0]) == 16  # without roots: followed, as before
    (root / "set" / "b").unlink()
    (tmp_path / "empty").mkdir()  # no image in it, yet its name would be a label: the model's head would change
    (root / "set" / "b").symlink_to(tmp_path / "empty", target_is_directory=True)
    with pytest.raises(DataError, match="class folder b under .*/set resolves outside the data roots"):
        image_folder(root / "set", None, roots=roots)
    assert image_folder(root / "set", None)[1] == ["a", "b"]  # without roots: followed, as before
    (root / "set" / "b").unlink()
    (root / "set" / "a" / "leak.png").symlink_to(synth_dir / "class_001_square" / "00000.png")
    with pytest.raises(DataError, match="image a/leak.png under"):
        image_files(root / "set", None, roots=roots)


def test_augmentation_depends_on_seed_epoch_index_only(synth_dir):
    dataset = image_files(synth_dir, pretrain_transform(48, 0.2), seed=3)
    first = dataset[5][0]
    torch.rand(100)  # the caller's RNG state must not matter
    assert torch.equal(dataset[5][0], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[5][0], first)


def test_images_are_decoded_by_the_contract(tmp_path):
    # A fully transparent PNG: a plain convert("RGB") gives black, the preprocessing contract white.
    from PIL import Image

    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    image = image_files(tmp_path, None).load(tmp_path / "clear.png")
    assert image.mode == "RGB" and image.getpixel((20, 20)) == (255, 255, 255)


def test_eval_transform_is_the_model_input_normalised(synth_dir):
    transform = EvalTransform(32)
    dataset = image_files(synth_dir, transform)
    path = dataset.samples[0][0]
    pixels = transform.model_input(dataset.load(path))
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    torch.testing.assert_close(dataset[0][0], (pixels.float() / 255 - mean) / std, rtol=0, atol=1e-6)
