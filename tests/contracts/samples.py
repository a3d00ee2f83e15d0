"""Image files for the preprocessing tests, generated in the test (nothing read from disk).

Each file is one of the cases the preprocessing must handle the same way everywhere: EXIF orientation, alpha,
16-bit, palette with transparency, CMYK, a JPEG large enough for draft-mode decoding, and a decompression bomb.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): smooth colour ramps plus a little noise, so resampling differences show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramps = np.stack([255 * x / max(1, width - 1), 255 * y / max(1, height - 1),
                      127 + 127 * np.sin((x + y) / 9.0)], axis=-1)
    return np.clip(ramps + rng.normal(0, 8, ramps.shape), 0, 255).astype(np.uint8)


def plain_rgb_png() -> bytes:
    return save(Image.fromarray(gradient(300, 200, seed=1)), "PNG")


def exif_rotated_jpeg(width: int = 640, height: int = 520) -> bytes:
    """A landscape JPEG whose EXIF says 'rotate 90 degrees clockwise to display'; large enough (>= 2x the
    224 px model's cover size) that the JPEG decoder's draft mode reduces it."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return save(Image.fromarray(gradient(width, height, seed=2)), "JPEG", exif=exif.tobytes(), quality=92)


def rgba_png() -> bytes:
    """Half-transparent areas and a fully transparent band (which must come out white, not black)."""
    rgba = np.dstack([gradient(260, 240, seed=3), np.zeros((240, 260), np.uint8)])
    rgba[:, :, 3] = np.linspace(0, 255, 260, dtype=np.uint8)[None, :]
    rgba[:40, :, 3] = 0
    return save(Image.fromarray(rgba, "RGBA"), "PNG")


def grey16_png() -> bytes:
    """16-bit greyscale over the full 0..65535 range (clipping instead of scaling would saturate it)."""
    ramp = np.linspace(0, 65535, 250 * 230).reshape(230, 250).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I")
    return save(image, "PNG")


def palette_gif_with_transparency() -> bytes:
    """A palette GIF whose index 0 is transparent (must come out white)."""
    quantized = Image.fromarray(gradient(240, 240, seed=4)).quantize(16)
    pixels = np.asarray(quantized).copy()
    pixels[60:180, 60:180] = 0
    image = Image.fromarray(pixels, "P")
    image.putpalette(quantized.getpalette())
    return save(image, "GIF", transparency=0)


def cmyk_jpeg() -> bytes:
    return save(Image.fromarray(gradient(280, 260, seed=5)).convert("CMYK"), "JPEG", quality=92)


# name -> (file extension, bytes), every case the parity test feeds through training and serving.
def parity_cases() -> dict[str, tuple[str, bytes]]:
    return {
        "plain_rgb": (".png", plain_rgb_png()),
        "exif_rotated": (".jpg", exif_rotated_jpeg()),
        "rgba": (".png", rgba_png()),
        "grey16": (".png", grey16_png()),
        "palette_transparent": (".gif", palette_gif_with_transparency()),
        "cmyk": (".jpg", cmyk_jpeg()),
    }


def png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A valid PNG header claiming width x height, with a tiny compressed body (a few hundred bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + \
        chunk(b"IEND", b"")
