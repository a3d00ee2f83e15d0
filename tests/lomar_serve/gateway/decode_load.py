"""Huge-image load on a running gateway, for the decode-memory test and benchmark: one request of many
40-megapixel RGBA PNGs while another client sends small JPEGs, with the gateway's RSS sampled throughout.

Used by tests/lomar_serve/gateway/e2e/test_decode_memory.py and benchmarks/decode_memory.py.
"""
from __future__ import annotations

import statistics
import struct
import threading
import time
import zlib
from dataclasses import dataclass

import httpx
import numpy as np
import psutil

from tests.lomar_serve.photos import photo_bytes


def big_rgba_png(width: int = 7300, height: int = 5479) -> bytes:
    """An 8-bit RGBA PNG of width x height (default 40.0 megapixels) that compresses to a few hundred KB:
    horizontal colour and alpha gradients, a new colour band every 256 rows (PNG "Up" filter: a row equal to the
    one above is all zeros). Written row by row: the raw 160 MB never exist at once."""
    x = np.arange(width)
    base = np.empty((width, 4), np.uint8)
    base[:, 0] = x * 255 // width
    base[:, 2] = (x // 64 % 2) * 200
    base[:, 3] = 64 + x * 191 // width
    compressor = zlib.compressobj(9)
    chunks, previous = [], np.zeros_like(base)
    for y in range(height):
        row = base.copy()
        row[:, 1] = (y // 256) * 11 % 256
        chunks.append(compressor.compress(b"\2" + (row - previous).tobytes()))  # filter 2 (Up), mod 256
        previous = row
    chunks.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit, colour type 6 = RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(chunks)) + chunk(b"IEND", b"")


@dataclass
class DecodeLoad:
    """What one run measured (RSS of the gateway process, in MB)."""

    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    big_status: int
    big_seconds: float
    small_count: int
    small_errors: int
    small_p50_s: float
    small_p99_s: float
    small_max_s: float


def run_decode_load(url: str, pid: int, *, count: int = 32, settle_s: float = 3.0, small_interval_s: float = 0.05,
                    endpoint: str = "/v1/embed") -> DecodeLoad:
    """After a warm-up, send `count` big PNGs in one request to `endpoint` while small JPEGs go to /v1/classify
    one after another; sample the RSS of process `pid` every 10 ms from before the big request until `settle_s`
    after it."""
    process = psutil.Process(pid)
    big = big_rgba_png()
    small = photo_bytes("coffee")
    with httpx.Client(base_url=url, timeout=60.0) as client:  # warm up: model catalog, first inferences
        for path in ("/v1/classify", endpoint) * 3:
            client.post(path, content=small, headers={"content-type": "image/jpeg"}).raise_for_status()
    start_rss = process.memory_info().rss
    peak, done, sampling = [start_rss], threading.Event(), threading.Event()
    latencies: list[float] = []
    errors = [0]

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    def small_client() -> None:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            while not done.is_set():
                began = time.perf_counter()
                response = client.post("/v1/classify", content=small, headers={"content-type": "image/jpeg"})
                latencies.append(time.perf_counter() - began)
                errors[0] += response.status_code != 200
                time.sleep(small_interval_s)

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=small_client, daemon=True)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    try:
        response = httpx.post(f"{url}{endpoint}", files=[("image", (f"{i}.png", big, "image/png")) for i in range(count)],
                              timeout=600.0)
    finally:
        big_seconds = time.perf_counter() - began
        done.set()
        threads[1].join(timeout=60)
    time.sleep(settle_s)
    end_rss = process.memory_info().rss
    sampling.set()
    threads[0].join(timeout=5)
    ordered = sorted(latencies) or [float("nan")]
    return DecodeLoad(rss_start_mb=start_rss / 2**20, rss_peak_mb=peak[0] / 2**20, rss_end_mb=end_rss / 2**20,
                      big_status=response.status_code, big_seconds=big_seconds, small_count=len(latencies),
                      small_errors=errors[0], small_p50_s=statistics.median(ordered),
                      small_p99_s=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], small_max_s=ordered[-1])
