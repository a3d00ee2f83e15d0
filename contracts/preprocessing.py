"""THE image preprocessing of every LoMaR model: file or bytes -> RGB image -> the model's input, UINT8 (3, H, W).

Training (evaluation transform and the decoded image its augmentations start from), the gateway's decoder, and
job verification all call these functions, so a model is evaluated on exactly the bytes it is served.

Pillow does the work:
- accepted formats: `IMAGE_FORMATS` only (no EPS, PSD, ICO...: formats we do not test are refused, not guessed);
- limits checked from the header before any pixel is decoded (`max_pixels` against decompression bombs,
  `min_side`);
- JPEG draft mode when the model size is known: the decoder scales by 1/2, 1/4 or 1/8 while decoding, so a
  12-megapixel photo is never fully decoded for a 224x224 model;
- EXIF orientation applied; the first frame of multi-frame files;
- every mode to RGB: alpha (RGBA, LA, palette with transparency) composited on white, 16-bit and float images
  scaled (not clipped) to 8 bits, CMYK, YCbCr, 1-bit, greyscale converted;
- evaluation geometry: the centre crop covering `crop_fraction` (0.875, the timm/MAE evaluation default) of the
  shorter side, resampled straight to the model size with a bicubic box resize.

Errors form a small hierarchy (`ImageError`: `InvalidImage`, `UnsupportedImage`, `ImageTooLarge`); the gateway
maps them to its HTTP errors, training skips the file.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

# Pillow format names we accept; file extensions follow from Pillow's own registry.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "PPM")
_FORMAT_ALIASES = {"MPO": "JPEG"}  # multi-picture JPEG (some cameras): opened by the JPEG plugin
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(sorted(
    extension for extension, name in Image.registered_extensions().items()
    if _FORMAT_ALIASES.get(name, name) in IMAGE_FORMATS))

MAX_PIXELS = 40_000_000  # width * height limit, checked before decoding (decompression bombs)
MIN_SIDE = 8  # smaller images are refused
CROP_FRACTION = 0.875  # evaluation: the centre crop covers this fraction of the shorter side
# The models' input normalisation (after scaling uint8 to 0..1): ImageNet statistics, as the paper's models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_WHITE = (255, 255, 255, 255)
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Modes Image.reduce averages correctly (not palette or 1-bit images, not the I;16 variants).
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F", "La", "RGBa"}
_REDUCING_GAP = 3.0  # as in resize_crop: after the integer reduction, the resampling still shrinks >= 3x

Source = bytes | str | os.PathLike


class ImageError(Exception):
    """An image that cannot become a model input. `message` says why, for the person who sent it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(ImageError):
    """Empty, truncated, corrupt or too small."""


class UnsupportedImage(ImageError):
    """Not an image in an accepted format, or a pixel mode that has no RGB conversion."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (a decompression bomb, or simply too big)."""


@dataclass(frozen=True)
class DecodeOptions:
    """How to turn an image into a model input."""

    size: tuple[int, int]  # model input (H, W)
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE
    crop_fraction: float = CROP_FRACTION

    def __post_init__(self) -> None:
        if min(self.size) < 1 or self.max_pixels < 1 or self.min_side < 1:
            raise ValueError(f"invalid decode options {self}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")


def load_rgb(source: Source, options: DecodeOptions | None = None, *, max_pixels: int = MAX_PIXELS,
             min_side: int = MIN_SIDE) -> Image.Image:
    """Open, check, decode and orient an image; RGB, upright.

    Args:
        source: the file's bytes, or its path.
        options: the model input it is decoded for: its limits apply, and JPEGs are decoded in draft mode just
            large enough for `resize_crop(.., options)`. None: full resolution (training augmentations), with the
            limits `max_pixels` and `min_side`.
    Raises:
        InvalidImage, UnsupportedImage, ImageTooLarge.
    """
    if options is not None:
        max_pixels, min_side = options.max_pixels, options.min_side
    try:
        if isinstance(source, bytes):
            return _load(io.BytesIO(source), options, max_pixels, min_side)
        with open(source, "rb") as file:
            return _load(file, options, max_pixels, min_side)
    except ImageError:
        raise
    except Exception as error:  # a malformed file is the sender's problem, never a crash
        raise InvalidImage(f"cannot decode the image: {type(error).__name__}: {error}") from error


def resize_crop(image: Image.Image, options: DecodeOptions) -> np.ndarray:
    """The evaluation geometry: centre crop covering `crop_fraction` of the shorter side (in source pixels),
    resized straight to the model's size (only the crop is resampled, bicubic).

    Args:
        image: RGB, any size.
    Returns:
        uint8 array (3, H, W), C-contiguous.
    """
    target_h, target_w = options.size
    scale = scale_to_cover(image.size, options)
    width, height = image.size
    box_w, box_h = min(width, target_w / scale), min(height, target_h / scale)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    resized = image.resize((target_w, target_h), Image.Resampling.BICUBIC,
                           box=(left, top, left + box_w, top + box_h), reducing_gap=_REDUCING_GAP)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


def decode_image(source: Source, options: DecodeOptions) -> np.ndarray:
    """An image (bytes or path) -> the model's input.

    Returns:
        uint8 array (3, H, W), RGB, centre-cropped and resized to `options.size`.
    Raises:
        InvalidImage (empty, truncated, too small), UnsupportedImage (not an accepted format), ImageTooLarge.
    """
    return resize_crop(load_rgb(source, options), options)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha composited on white, 16-bit and float scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    try:
        return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV
    except ValueError as error:
        raise UnsupportedImage(f"image mode {mode} cannot be converted to RGB") from error


def _load(file: BinaryIO, options: DecodeOptions | None, max_pixels: int, min_side: int) -> Image.Image:
    image = _open(file, options, max_pixels, min_side)
    ImageOps.exif_transpose(image, in_place=True)  # copies only an image that must be turned
    if options is not None:
        image = _reduce_to_cover(image, options)
    return to_rgb(image)


def _reduce_to_cover(image: Image.Image, options: DecodeOptions) -> Image.Image:
    """Shrink a freshly decoded image by the integer factor the final resize would apply anyway (its
    reducing_gap), before any full-size conversion copies it: a 40-megapixel RGBA PNG is composited on white at
    ~1 megapixel instead of 40 (the gateway's decode memory budget counts on it)."""
    if image.mode not in _REDUCIBLE_MODES:
        return image
    factor = int(1.0 / scale_to_cover(image.size, options) / _REDUCING_GAP)
    return image.reduce(factor) if factor >= 2 else image


def _open(file: BinaryIO, options: DecodeOptions | None, max_pixels: int, min_side: int) -> Image.Image:
    """Open lazily, check the header's size against the limits, then decode (JPEG in draft mode)."""
    if not file.read(1):
        raise InvalidImage("the image is empty (0 bytes)")
    file.seek(0)
    try:
        image = Image.open(file, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image has too many pixels: {error}") from error
    except UnidentifiedImageError as error:
        raise UnsupportedImage(f"not an image in an accepted format ({', '.join(IMAGE_FORMATS)})"
                               ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImage(f"cannot read the image header: {error}") from error
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if min(width, height) < min_side:
        raise InvalidImage(f"image is {width}x{height}; both sides must be at least {min_side} pixels")
    if options is not None:
        draft(image, options)
    try:
        image.load()  # multi-frame files: the first frame (the file is positioned there after open)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image has too many pixels: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidImage(f"cannot decode the image (truncated or corrupt): {error}") from error
    return image


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Grey levels of a 16-bit, 32-bit integer or float image -> uint8 (H, W)."""
    values = values.astype(np.float64)
    if mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0  # float images are 0..1 or 0..255
    else:
        top = 65535.0  # I;16* and Pillow's 16-bit "I" images
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def draft(image: Image.Image, options: DecodeOptions) -> None:
    """Configure a JPEG's decoder (nothing is decoded yet) for the smallest power-of-two reduction that still
    covers the resize target; other formats are left as they are. `image.size` is then the size it decodes to."""
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        scale = scale_to_cover(image.size, options)
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def scale_to_cover(size: tuple[int, int], options: DecodeOptions) -> float:
    """The scale factor that makes (width, height) cover the resize target before the centre crop."""
    width, height = size
    target_h, target_w = options.size
    return max(target_w / width, target_h / height) / options.crop_fraction
