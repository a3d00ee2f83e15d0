"""Decode memory of the gateway: one request of N x 40-megapixel RGBA PNGs (171 KB each on the wire, 160 MB each
decoded) while another client sends small JPEGs one after another; the gateway process's RSS is sampled every
10 ms. Printed: RSS before / peak / after, the big request's time, small-request p50 / p99 / max.

    python benchmarks/decode_memory.py                                  # exports the official micro fixtures
    python benchmarks/decode_memory.py --model-repository model_repository --count 32
    LOMAR_DECODE_BUDGET_PIXELS=160000000 python benchmarks/decode_memory.py     # another budget

The gateway is started here (`lomar serve`, which is the process measured; Triton is its child and not counted).
The same load, with asserted bounds, is tests/lomar_serve/gateway/e2e/test_decode_memory.py.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_load import export_fixtures, start_stack  # noqa: E402
from tests.lomar_serve.gateway.decode_load import run_decode_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, help="default: export the official micro fixtures")
    parser.add_argument("--count", type=int, default=32, help="40-megapixel PNGs in the one big request")
    parser.add_argument("--endpoint", default="/v1/embed", choices=("/v1/embed", "/v1/classify"))
    args = parser.parse_args(argv)
    os.environ.setdefault("LOMAR_MAX_IMAGES", str(max(32, args.count)))
    with tempfile.TemporaryDirectory() as folder:
        repository = args.model_repository or export_fixtures(Path(folder))
        process, url, _ = start_stack(repository, Path(folder) / "serve.log")
        try:
            load = run_decode_load(url, process.pid, count=args.count, endpoint=args.endpoint)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    print(f"{args.count} x 40 MP RGBA PNG in one {args.endpoint} request: status {load.big_status}, "
          f"{load.big_seconds:.1f} s")
    print(f"gateway RSS: start {load.rss_start_mb:.0f} MB, peak {load.rss_peak_mb:.0f} MB, "
          f"after {load.rss_end_mb:.0f} MB")
    print(f"small JPEG /v1/classify meanwhile: {load.small_count} requests, {load.small_errors} errors, "
          f"p50 {load.small_p50_s:.3f} s, p99 {load.small_p99_s:.3f} s, max {load.small_max_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
