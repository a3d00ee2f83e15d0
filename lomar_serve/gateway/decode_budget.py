"""The gateway's image decoding: an upload -> the model's input, UINT8 (3, H, W) RGB, under bounded memory.

The preprocessing itself is `contracts.preprocessing` (the one training evaluates with); `decode_image` turns its
errors into the gateway's (`lomar_serve.gateway.errors.from_image_error`).

Bounded decoding memory: a pixel budget shared by every request, sized from image headers before decoding.

A 40-megapixel RGBA PNG is 169 KB on the wire and 160 MB decoded (Pillow keeps 4 bytes per pixel for every
8-bit multi-band mode), so uploads alone say nothing about memory. Each image's header gives its decoded size
(after JPEG draft reduction); the decode waits until that many pixels fit in `decode_budget_pixels`, summed over
all decodes in flight, and an image that could never fit is refused with 413. Any waiter whose pixels fit goes
first (not FIFO), so a small request is never queued behind a huge one. After a large decode the C heap is
trimmed (glibc `malloc_trim`), so the gateway's RSS returns to where it was.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import io
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from functools import lru_cache

import numpy as np
from PIL import Image

from contracts import preprocessing
from contracts.preprocessing import ALPHA_MODES, DecodeOptions, draft
from lomar_serve.common.errors import PayloadTooLarge
from lomar_serve.gateway.errors import from_image_error

LOGGER = logging.getLogger(__name__)
TRIM_AFTER_PIXELS = 4_000_000  # decodes at least this big give their memory back to the OS afterwards


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


class PixelBudget:
    """At most `capacity` pixels decoded at once. A decode thread takes room that is free right away (`try_take`,
    then `give_back`); a decode that must wait for room waits on the event loop (`reserve`)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the decode budget must be positive, got {capacity}")
        self.capacity = capacity
        self.in_use = 0
        self._lock = threading.Lock()  # in_use changes in decode threads and on the event loop
        self._changed = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None  # the waiters' event loop
        self._waiting = 0

    def try_take(self, pixels: int) -> bool:
        """Take `pixels` if they fit now (from any thread). Raises PayloadTooLarge when they can never fit."""
        if pixels > self.capacity:
            raise PayloadTooLarge(f"the image needs {pixels} pixels to decode; the gateway decodes at most "
                                  f"{self.capacity} at once (setting decode_budget_pixels)")
        with self._lock:
            if self.in_use + pixels > self.capacity:
                return False
            self.in_use += pixels
            return True

    def give_back(self, pixels: int) -> None:
        """Return pixels taken (from any thread), waking the reservations waiting for room."""
        with self._lock:
            self.in_use -= pixels
            loop = self._loop if self._waiting else None
        if loop is not None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget for the block, waiting until they fit (asyncio). Raises PayloadTooLarge
        when they can never fit."""
        if not self.try_take(pixels):
            async with self._changed:
                with self._lock:
                    self._loop = asyncio.get_running_loop()
                    self._waiting += 1
                try:  # wait_for tries first: room given back before the count went up is seen
                    await self._changed.wait_for(lambda: self.try_take(pixels))
                finally:
                    with self._lock:
                        self._waiting -= 1
        try:
            yield
        finally:
            self.give_back(pixels)


def decode_cost(data: bytes, options: DecodeOptions) -> int:
    """Pixels the decode of `data` will hold, from its header only (0 when the header is unreadable: the decode
    then fails at once with the right error). JPEGs count at their draft-reduced size, asked of Pillow exactly
    as `contracts.preprocessing` asks it (draft() only configures the decoder; nothing is decoded here)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            draft(image, options)
            width, height, mode = image.width, image.height, image.mode
    except Exception:  # noqa: BLE001 (a header Pillow cannot read is decode_image's error to report)
        return 0
    return width * height * (2 if mode in ALPHA_MODES else 1)  # alpha: reduced through a premultiplied copy


async def decode_batch_within(blobs: Sequence[bytes], options: DecodeOptions, executor: Executor | None,
                              budget: PixelBudget) -> np.ndarray:
    """Decode uploads in parallel threads (Pillow releases the GIL while decoding), each holding its pixels of
    the budget while it decodes: the gateway's one way to decode a batch. Returns uint8 (N, 3, H, W).

    One thread hop per image when the budget has room (header, reservation and decode in one call); an image that
    must wait for room waits on the event loop, then decodes."""
    loop = asyncio.get_running_loop()

    async def one(blob: bytes) -> np.ndarray:
        pixels, array = await loop.run_in_executor(executor, decode_if_room, blob, options, budget)
        if array is None:
            async with budget.reserve(pixels):
                array = await loop.run_in_executor(executor, decode_image, blob, options)
            if pixels >= TRIM_AFTER_PIXELS:
                await loop.run_in_executor(executor, release_memory)
        return array

    return np.stack(await asyncio.gather(*(one(blob) for blob in blobs)))


def decode_if_room(data: bytes, options: DecodeOptions, budget: PixelBudget) -> tuple[int, np.ndarray | None]:
    """In a decode thread: the pixels `data` needs (decode_cost), and the image decoded right away if the budget
    has room for them now (held while it decodes and given back in this call, whatever happens), else None."""
    pixels = decode_cost(data, options)
    if not budget.try_take(pixels):
        return pixels, None
    try:
        return pixels, decode_image(data, options)
    finally:
        budget.give_back(pixels)
        if pixels >= TRIM_AFTER_PIXELS:
            release_memory()


def release_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise; no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim():  # noqa: ANN202 (a ctypes function or None)
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
