"""The model input a collection keeps per image: the uint8 (3, H, W) array the model saw, losslessly, so that a
re-index embeds exactly that again with another model version.

Written since 2026-12 (`encode_input`): the 4 bytes b"LMI1", C, H, W as little-endian uint16, then one zstd frame
(level 1) of the C*H*W bytes after a left-neighbour difference along each row (mod 256; channel-major). A 224x224
photograph takes ~0.3 ms to write and ~0.2 ms to read; the lossless PNG written before (compress_level 1) took ~3 ms
and ~1.4 ms, as much CPU as decoding the upload, on the cores the model needs too. Sizes are alike (74 KB against
75 KB on average for benchmarks/ingest.py's photographs, up to ~10 % more on others).
Rows written before are PNG and stay as they are: `decode_input` reads both, `as_png` gives either as PNG (the
thumbnail route).

    data = encode_input(image)                 # uint8 (3, H, W) -> bytes
    assert (decode_input(data) == image).all()
"""
from __future__ import annotations

import io
import struct
import threading

import numpy as np
import zstandard
from PIL import Image

MAGIC = b"LMI1"  # format 1 of the stored input
HEADER = struct.Struct("<4s3H")  # MAGIC, C, H, W
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # rows written before format 1
ZSTD_LEVEL = 1  # the fastest level that still takes most of what the difference leaves (higher: slower, ~same size)
_contexts = threading.local()  # a zstd context serves one thread at a time


def encode_input(image: np.ndarray) -> bytes:
    """uint8 (3, H, W) -> the stored form (format 1)."""
    if image.dtype != np.uint8 or image.ndim != 3 or max(image.shape) > 0xFFFF or 0 in image.shape:
        raise ValueError(f"a model input is uint8 (C, H, W) with sides of 1-65535, not {image.dtype} {image.shape}")
    residual = np.array(image, copy=True, order="C")  # (C, H, W)
    residual[:, :, 1:] -= image[:, :, :-1]  # wraps mod 256: exact inverse by a cumulative sum
    return HEADER.pack(MAGIC, *image.shape) + _compressor().compress(residual.data)


def decode_input(data: bytes) -> np.ndarray:
    """The stored form (format 1, or the PNG of earlier rows) -> uint8 (3, H, W).

    Raises:
        ValueError: not a stored input (unknown format, truncated, or sizes that do not match).
    """
    if data[:len(MAGIC)] == MAGIC:
        if len(data) < HEADER.size:
            raise ValueError("a stored input cut short in its header")
        _, channels, height, width = HEADER.unpack_from(data)
        size = channels * height * width
        try:
            raw = _decompressor().decompress(data[HEADER.size:], max_output_size=size)
        except zstandard.ZstdError as error:
            raise ValueError(f"a stored input that does not decompress: {error}") from None
        if len(raw) != size:
            raise ValueError(f"a stored input of {len(raw)} bytes; its header says {channels}x{height}x{width}")
        residual = np.frombuffer(raw, dtype=np.uint8).reshape(channels, height, width)
        return np.cumsum(residual, axis=2, dtype=np.uint8)  # undoes the left-neighbour difference, mod 256
    if data[:len(PNG_SIGNATURE)] == PNG_SIGNATURE:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy()
    raise ValueError("not a stored model input (neither format 1 nor PNG)")


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (3, H, W) -> lossless PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def as_png(data: bytes) -> bytes:
    """A stored input as PNG: PNG rows as they are, format 1 encoded (ValueError: not a stored input)."""
    return data if data[:len(PNG_SIGNATURE)] == PNG_SIGNATURE else encode_png(decode_input(data))


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_contexts, "compressor"):
        _contexts.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return _contexts.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_contexts, "decompressor"):
        _contexts.decompressor = zstandard.ZstdDecompressor()
    return _contexts.decompressor
