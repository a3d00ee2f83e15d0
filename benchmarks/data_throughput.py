"""Pretraining input pipeline on this CPU: JPEG decode + RandomResizedCrop + flip + to tensor (the training dataset
and transform), img/s of one data-loading worker (one thread), and the workers that 2,500 img/s needs (from the
images per CPU second, which other load on the machine does not lower).

    python benchmarks/data_throughput.py                       # 64 ImageNet-like JPEGs (500x375, quality 90), 224 px
    python benchmarks/data_throughput.py --images 128 --seconds 20 --sizes 224 448

The JPEGs are generated (scikit-image's photographs cut to 500x375). GPU decoding (`--decode gpu`) is measured by
`benchmarks/gpu_suite.py --parts data` on a GPU host.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.suite.data_path import TARGET_IMG_S, cpu_per_worker, write_jpegs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="JPEGs to generate")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    args = parser.parse_args(argv)
    print(f"{'size':>5} | {'img/s (wall)':>12} | {'img per CPU s':>13} | workers for {TARGET_IMG_S:,.0f} img/s")
    with tempfile.TemporaryDirectory() as temp:
        write_jpegs(Path(temp), args.images)
        for size in args.sizes:
            wall, per_cpu_second = cpu_per_worker(Path(temp), args.seconds, size)
            print(f"{size:>5} | {wall:>12.1f} | {per_cpu_second:>13.1f} | {math.ceil(TARGET_IMG_S / per_cpu_second)}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
