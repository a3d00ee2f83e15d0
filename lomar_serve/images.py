"""Image decoding for the gateway: bytes -> the model's input, UINT8 (3, H, W) RGB.

Pillow does the work: JPEG draft mode (the decoder scales by 1/2, 1/4 or 1/8 while decoding, so a 12-megapixel
photo is never fully decoded for a 224x224 model), EXIF orientation, every mode to RGB (alpha composited on white,
16-bit scaled, not clipped), the first frame of multi-frame files, and limits checked from the header before any
pixel is decoded. Decoding is CPU work: callers run it off the event loop (`decode_batch`).
"""
from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lomar_serve.errors import GatewayError, InvalidImage, PayloadTooLarge, UnsupportedMediaType

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# Modes Image.reduce averages correctly (not palette or 1-bit images, not the I;16 variants).
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F", "La", "RGBa"}
_REDUCING_GAP = 3.0  # as in _resize_crop: after the integer reduction, the resampling still shrinks >= 3x


@dataclass(frozen=True)
class DecodeOptions:
    """How to turn an upload into a model input."""

    size: tuple[int, int]  # model input (H, W)
    max_pixels: int = 40_000_000  # width * height limit, checked before decoding (decompression bombs)
    min_side: int = 8  # smaller images are refused
    crop_fraction: float = 0.875  # resize so the centre crop covers this fraction (timm/MAE evaluation default)

    def __post_init__(self) -> None:
        if min(self.size) < 1 or self.max_pixels < 1 or self.min_side < 1:
            raise ValueError(f"invalid decode options {self}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")


def decode_image(data: bytes, options: DecodeOptions) -> np.ndarray:
    """Decode one upload into the model's input.

    Returns:
        uint8 array (3, H, W), RGB, resized (shorter side) and centre-cropped to `options.size`.
    Raises:
        InvalidImage (empty, truncated, too small), UnsupportedMediaType (not an image Pillow reads),
        PayloadTooLarge (more pixels than allowed).
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        image = _open(data, options)
        ImageOps.exif_transpose(image, in_place=True)  # copies only an image that must be turned
        return _resize_crop(_to_rgb(_reduce_to_cover(image, options)), options)
    except GatewayError:
        raise
    except Exception as error:  # a malformed file must be the client's 400, never the server's 500
        raise InvalidImage(f"cannot decode the image: {type(error).__name__}: {error}") from error


async def decode_batch(blobs: Sequence[bytes], options: DecodeOptions, executor: Executor | None) -> np.ndarray:
    """Decode several uploads in parallel threads (Pillow releases the GIL while decoding).

    Returns:
        uint8 array (N, 3, H, W).
    """
    loop = asyncio.get_running_loop()
    arrays = await asyncio.gather(*(loop.run_in_executor(executor, decode_image, blob, options) for blob in blobs))
    return np.stack(arrays)


def _open(data: bytes, options: DecodeOptions) -> Image.Image:
    """Open lazily, check the header's size against the limits, then decode (JPEG in draft mode)."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(f"image has too many pixels: {error}") from error
    except UnidentifiedImageError as error:
        raise UnsupportedMediaType("not an image in a format the server reads (JPEG, PNG, WebP, GIF, TIFF, BMP...)"
                                   ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImage(f"cannot read the image header: {error}") from error
    width, height = image.size
    if width * height > options.max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height} = {width * height} pixels; "
                              f"the limit is {options.max_pixels}")
    if min(width, height) < options.min_side:
        raise InvalidImage(f"image is {width}x{height}; both sides must be at least {options.min_side} pixels")
    if image.format == "JPEG":
        # Ask the decoder for the smallest power-of-two reduction that still covers the resize target.
        scale = _scale_to_cover(image.size, options)
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()  # multi-frame files: the first frame (the file is positioned there after open)
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(f"image has too many pixels: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidImage(f"cannot decode the image (truncated or corrupt): {error}") from error
    return image


def _reduce_to_cover(image: Image.Image, options: DecodeOptions) -> Image.Image:
    """Shrink a freshly decoded image by the integer factor the final resize would apply anyway (its
    reducing_gap), before any full-size conversion copies it: a 40-megapixel RGBA PNG is composited on white
    at ~1 megapixel instead of 40 (part of the decode memory budget, lomar_serve/decode_budget.py)."""
    if image.mode not in _REDUCIBLE_MODES:
        return image
    factor = int(1.0 / _scale_to_cover(image.size, options) / _REDUCING_GAP)
    return image.reduce(factor) if factor >= 2 else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha composited on white, 16-bit and float scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    try:
        return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV
    except ValueError as error:
        raise UnsupportedMediaType(f"image mode {mode} cannot be converted to RGB") from error


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Grey levels of a 16-bit, 32-bit integer or float image -> uint8 (H, W)."""
    values = values.astype(np.float64)
    if mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0  # float images are 0..1 or 0..255
    else:
        top = 65535.0  # I;16* and Pillow's 16-bit "I" images
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def _scale_to_cover(size: tuple[int, int], options: DecodeOptions) -> float:
    """Scale factor that makes (width, height) cover the resize target before the centre crop."""
    width, height = size
    target_h, target_w = options.size
    return max(target_w / width, target_h / height) / options.crop_fraction


def _resize_crop(image: Image.Image, options: DecodeOptions) -> np.ndarray:
    """Centre crop covering `crop_fraction` of the shorter side (in source pixels), resized straight to the
    model's size: only the crop is resampled. Returns (3, H, W)."""
    target_h, target_w = options.size
    scale = _scale_to_cover(image.size, options)
    width, height = image.size
    box_w, box_h = min(width, target_w / scale), min(height, target_h / scale)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    resized = image.resize((target_w, target_h), Image.Resampling.BICUBIC,
                           box=(left, top, left + box_w, top + box_h), reducing_gap=_REDUCING_GAP)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)
