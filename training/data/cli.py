"""`lomar data`: data-set utilities.

    lomar data synth --out DIR --classes N --per-class M --size S [--seed 0] [--format png|jpg] [--val-per-class V]

writes a synthetic labelled set as real image files: DIR/CLASS/*.png, or DIR/train/CLASS and DIR/val/CLASS when
--val-per-class is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.data.synth import FORMATS, write_synthetic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar data", description="data-set utilities")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write a synthetic labelled image set (class sub-folders)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--classes", type=int, default=10)
    synth.add_argument("--per-class", type=int, default=100, help="training images per class")
    synth.add_argument("--val-per-class", type=int, default=0, help="if > 0, also write OUT/val (and OUT/train)")
    synth.add_argument("--size", type=int, default=224, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--format", choices=sorted(FORMATS), default="png")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if args.val_per_class > 0:
            names = write_synthetic(out / "train", args.classes, args.per_class, args.size, args.seed, args.format)
            write_synthetic(out / "val", args.classes, args.val_per_class, args.size, args.seed + 1, args.format)
        else:
            names = write_synthetic(out, args.classes, args.per_class, args.size, args.seed, args.format)
    except (ValueError, OSError) as exc:
        print(f"lomar data synth: {exc}", file=sys.stderr)
        return 2
    total = len(names) * (args.per_class + args.val_per_class)
    print(f"wrote {total} images of {len(names)} classes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
