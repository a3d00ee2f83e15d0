"""The stored model input (lomar_serve/search/stored_input.py): format 1 round-trips every pixel exactly, the PNG
rows written before it are still read, thumbnails are PNG either way, and what is not a stored input is refused.
Collections holding both kinds and their re-index are in test_collection.py."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lomar_serve.search.stored_input import HEADER, MAGIC, PNG_SIGNATURE, as_png, decode_input, encode_input, encode_png
from tests.lomar_serve.photos import PHOTO_NAMES, photo_bytes


def photograph(size: int = 224) -> np.ndarray:
    """A real photograph as a model input: uint8 (3, size, size)."""
    with Image.open(io.BytesIO(photo_bytes(PHOTO_NAMES[0]))) as image:
        return np.asarray(image.convert("RGB").resize((size, size))).transpose(2, 0, 1).copy()


def inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 7, 256))  # every left difference wraps somewhere
    return [photograph(), rng.integers(0, 256, (3, 224, 224), dtype=np.uint8),
            np.zeros((3, 5, 9), np.uint8), np.full((3, 9, 5), 255, np.uint8), ramp[:, :, ::-1].copy(), ramp.copy(),
            rng.integers(0, 256, (3, 1, 1), dtype=np.uint8), rng.integers(0, 256, (3, 17, 1), dtype=np.uint8),
            rng.integers(0, 256, (3, 1, 300), dtype=np.uint8)]


@pytest.mark.parametrize("image", inputs(), ids=lambda image: "x".join(map(str, image.shape)))
def test_format_1_round_trips_every_pixel(image: np.ndarray) -> None:
    data = encode_input(image)
    assert data[:len(MAGIC)] == MAGIC
    decoded = decode_input(data)
    assert decoded.dtype == np.uint8 and decoded.shape == image.shape and np.array_equal(decoded, image)
    assert decoded.flags.writeable and decoded.flags.c_contiguous  # usable as a batch row like a fresh decode


def test_a_photograph_is_compressed() -> None:
    image = photograph()
    assert len(encode_input(image)) < 0.8 * image.nbytes


def test_a_non_contiguous_input_is_stored_as_its_values() -> None:
    image = photograph()[:, ::2, ::3]  # a strided view
    assert np.array_equal(decode_input(encode_input(image)), image)


def test_png_rows_written_before_are_read() -> None:
    image = photograph(64)
    png = encode_png(image)  # what encode_input wrote before format 1
    assert png[:len(PNG_SIGNATURE)] == PNG_SIGNATURE
    assert np.array_equal(decode_input(png), image)


def test_thumbnails_are_png_of_the_stored_pixels() -> None:
    image = photograph(64)
    png = encode_png(image)
    assert as_png(png) == png  # an old row: as stored
    converted = as_png(encode_input(image))
    assert converted[:len(PNG_SIGNATURE)] == PNG_SIGNATURE and np.array_equal(decode_input(converted), image)


@pytest.mark.parametrize("data", [b"", b"GIF89a", MAGIC, MAGIC + b"\x03\x00",
                                  HEADER.pack(MAGIC, 3, 8, 8) + b"not zstd"])
def test_what_is_no_stored_input_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_input(data)


def test_a_frame_cut_short_or_of_other_sizes_is_refused() -> None:
    data = encode_input(photograph(32))
    with pytest.raises(ValueError):
        decode_input(data[:-10])
    _, channels, height, width = HEADER.unpack_from(data)
    for shape in ((channels, height, width + 1), (channels, height - 1, width)):
        with pytest.raises(ValueError):
            decode_input(HEADER.pack(MAGIC, *shape) + data[HEADER.size:])


@pytest.mark.parametrize("image", [np.zeros((3, 4, 4), np.float32), np.zeros((4, 4), np.uint8),
                                   np.zeros((3, 0, 4), np.uint8), np.zeros((3, 70_000, 1), np.uint8)])
def test_only_uint8_c_h_w_inputs_are_encoded(image: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_input(image)
