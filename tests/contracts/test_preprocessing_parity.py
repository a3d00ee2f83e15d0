"""Training's evaluation path and the gateway's decode path give the model identical inputs, byte for byte.

The files are generated here (tests/contracts/samples.py): an EXIF-rotated JPEG large enough for draft-mode
decoding, an RGBA PNG, a 16-bit PNG, a palette GIF with transparency, a CMYK JPEG and a plain RGB PNG. Each goes
through training's dataset + evaluation transform (`training.data`) and through the gateway's decoder
(`lomar_serve.gateway.decode_budget.decode_batch_within`, as the gateway calls it).
"""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image

from contracts.preprocessing import DecodeOptions
from export.wrappers import ImageNormalize
from lomar_serve.gateway.decode_budget import PixelBudget, decode_batch_within
from lomar_serve.gateway.settings import Settings
from tests.contracts.samples import parity_cases
from training.data import EvalTransform, image_folder

SIZE = 224
CASES = parity_cases()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    (root / "files").mkdir()
    for name, (extension, data) in CASES.items():
        (root / "files" / f"{name}{extension}").write_bytes(data)
    dataset, _ = image_folder(root, EvalTransform(SIZE))
    return dataset


def _index(dataset, name: str) -> int:
    return next(i for i, (path, _) in enumerate(dataset.samples) if path.stem == name)


def _served(name: str) -> np.ndarray:
    """uint8 (3, S, S): what the gateway sends to Triton for this upload."""
    budget = PixelBudget(Settings.model_fields["decode_budget_pixels"].default)  # the gateway's default
    return asyncio.run(decode_batch_within([CASES[name][1]], DecodeOptions(size=(SIZE, SIZE)), None, budget))[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_evaluation_and_serving_model_inputs_are_identical(dataset, name):
    index = _index(dataset, name)
    transform: EvalTransform = dataset.transform
    evaluated = transform.model_input(dataset.load(dataset.samples[index][0])).numpy()  # uint8 (3, S, S)
    served = _served(name)
    assert evaluated.dtype == served.dtype == np.uint8 and evaluated.shape == served.shape == (3, SIZE, SIZE)
    assert evaluated.tobytes() == served.tobytes()
    # The float tensor the model sees: the dataset's sample equals the exported graph's normalisation of the
    # served bytes, bit for bit.
    normalised, _, skipped = dataset[index]
    assert skipped == 0
    assert torch.equal(normalised, ImageNormalize()(torch.from_numpy(served)[None])[0])


@pytest.mark.parametrize("name", ["exif_rotated", "rgba", "grey16", "palette_transparent"])
def test_cases_exercise_the_rules(name):
    """Each special file decodes differently with a naive `convert("RGB")`: the parity above is not trivial."""
    naive = Image.open(io.BytesIO(CASES[name][1])).convert("RGB")
    naive_input = EvalTransform(SIZE).model_input(naive).numpy()
    assert not np.array_equal(naive_input, _served(name))


def test_the_large_jpeg_is_decoded_in_draft_mode_on_both_paths(dataset):
    loaded = dataset.load(dataset.samples[_index(dataset, "exif_rotated")][0])
    assert loaded.size == (260, 320)  # 640x520 decoded at 1/2, then turned upright by its EXIF orientation
