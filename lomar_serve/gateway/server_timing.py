"""Where one inference request's time went, in its `Server-Timing` response header (W3C Server Timing):

    Server-Timing: read;dur=0.41, decode;dur=4.87, infer;dur=16.02, total;dur=22.3

`read` the body read and parsed into images, `decode` the images decoded (thread hops included), `infer` the
Triton round trips, `total` from the request reaching the gateway's app to its response headers; milliseconds.

On with LOMAR_SERVER_TIMING (off by default: the figures tell any client how loaded the server is). Off, a stage
costs one ContextVar lookup. Each request gets its own `StageTimes` in a context variable, set by the
`ObserveRequests` middleware; the service records into whichever is current, so concurrent requests never mix.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = b"server-timing"
READ, DECODE, INFER, TOTAL = "read", "decode", "infer", "total"


class StageTimes:
    """Seconds spent per stage in one request (a stage run twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def header_value(self, total_s: float) -> bytes:
        """The Server-Timing value: every recorded stage, then `total`, in milliseconds."""
        entries = [*self.seconds.items(), (TOTAL, total_s)]
        return ", ".join(f"{stage};dur={seconds * 1000.0:.3f}" for stage, seconds in entries).encode("ascii")


CURRENT: ContextVar[StageTimes | None] = ContextVar("lomar_stage_times", default=None)


def record(stage: str, seconds: float) -> None:
    """Count `seconds` to `stage` of the current request, if its timings are collected."""
    times = CURRENT.get()
    if times is not None:
        times.add(stage, seconds)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the block as `stage` of the current request (no clock is read when timings are off)."""
    if CURRENT.get() is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - start)


def parse(value: str) -> dict[str, float]:
    """A Server-Timing header value -> {stage: milliseconds} (entries without a duration are left out)."""
    stages = {}
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "dur" and name:
                stages[name] = float(number)
    return stages
