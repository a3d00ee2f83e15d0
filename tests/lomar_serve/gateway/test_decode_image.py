"""The gateway's decoding wrapper: batch order, and preprocessing errors turned into the gateway's HTTP errors."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from contracts import preprocessing
from contracts.preprocessing import DecodeOptions
from lomar_serve.common.errors import PayloadTooLarge, UnsupportedMediaType
from lomar_serve.gateway.decode_budget import PixelBudget, decode_batch_within, decode_image
from lomar_serve.gateway.errors import InvalidImage, from_image_error
from lomar_serve.gateway.settings import Settings
from tests.contracts.samples import png_bomb
from tests.lomar_serve.photos import encode, photo_bytes

OPTIONS = DecodeOptions(size=(224, 224))
BUDGET_PIXELS = Settings.model_fields["decode_budget_pixels"].default  # the gateway's default budget


def decode_batch(blobs: list[bytes]):
    """A batch decoded as the gateway decodes one."""
    return asyncio.run(decode_batch_within(blobs, OPTIONS, None, PixelBudget(BUDGET_PIXELS)))


def test_decode_batch_keeps_order_and_matches_the_contract():
    blobs = [photo_bytes(name) for name in ("astronaut", "coffee", "chelsea")]
    batch = decode_batch(blobs)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.uint8
    for index, blob in enumerate(blobs):
        np.testing.assert_array_equal(batch[index], preprocessing.decode_image(blob, OPTIONS))


@pytest.mark.parametrize("data,error,status", [
    (b"", InvalidImage, 400),
    (encode(np.zeros((1, 1, 3), np.uint8), "PNG"), InvalidImage, 400),
    (b"hello, this is a text file\n" * 10, UnsupportedMediaType, 415),
    (png_bomb(), PayloadTooLarge, 413),
])
def test_preprocessing_errors_become_gateway_errors(data, error, status):
    with pytest.raises(error) as raised:
        decode_image(data, OPTIONS)
    assert raised.value.status == status and raised.value.message
    assert isinstance(raised.value.__cause__, preprocessing.ImageError)
    assert raised.value.message == raised.value.__cause__.message


def test_a_batch_with_one_bad_image_fails_with_its_error():
    with pytest.raises(UnsupportedMediaType):
        decode_batch([photo_bytes("coffee"), b"not an image at all"])


@pytest.mark.parametrize("image_error,gateway_error", [
    (preprocessing.InvalidImage, InvalidImage),
    (preprocessing.UnsupportedImage, UnsupportedMediaType),
    (preprocessing.ImageTooLarge, PayloadTooLarge),
])
def test_every_preprocessing_error_has_a_gateway_error(image_error, gateway_error):
    mapped = from_image_error(image_error("why"))
    assert type(mapped) is gateway_error and mapped.message == "why"
