"""The gateway's image decoding: an upload -> the model's input, UINT8 (3, H, W) RGB.

The preprocessing itself is `contracts.preprocessing` (the one training evaluates with); this module turns its
errors into the gateway's (`lomar_serve.errors.from_image_error`). Batches are decoded off the event loop under
the decode memory budget by `lomar_serve.decode_budget.decode_batch_within`.
"""
from __future__ import annotations

import numpy as np

from contracts import preprocessing
from contracts.preprocessing import DecodeOptions
from lomar_serve.errors import from_image_error

__all__ = ["DecodeOptions", "decode_image"]


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
