"""The gateway's image decoding: uploads -> the model's input, UINT8 (N, 3, H, W) RGB.

The preprocessing itself is `contracts.preprocessing` (the one training evaluates with); this module runs it
off the event loop and turns its errors into the gateway's (`lomar_serve.errors.from_image_error`).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from contracts import preprocessing
from contracts.preprocessing import DecodeOptions
from lomar_serve.errors import from_image_error

__all__ = ["DecodeOptions", "decode_batch", "decode_image"]


def decode_image(data: bytes, options: DecodeOptions) -> np.ndarray:
    """Decode one upload into the model's input.

    Returns:
        uint8 array (3, H, W), RGB, resized and centre-cropped to `options.size`.
    Raises:
        InvalidImage (empty, truncated, too small), UnsupportedMediaType (not an accepted image format),
        PayloadTooLarge (more pixels than allowed): the gateway's errors, with the decoder's message.
    """
    try:
        return preprocessing.decode_image(data, options)
    except preprocessing.ImageError as error:
        raise from_image_error(error) from error


async def decode_batch(blobs: Sequence[bytes], options: DecodeOptions, executor: Executor | None) -> np.ndarray:
    """Decode several uploads in parallel threads (Pillow releases the GIL while decoding).

    Returns:
        uint8 array (N, 3, H, W).
    """
    loop = asyncio.get_running_loop()
    arrays = await asyncio.gather(*(loop.run_in_executor(executor, decode_image, blob, options) for blob in blobs))
    return np.stack(arrays)
