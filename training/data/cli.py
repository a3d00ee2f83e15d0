"""`lomar data`: data-set utilities.

    lomar data synth --out DIR --classes N --per-class M --size S [--seed 0] [--format png|jpg] [--val-per-class V]
    lomar data photos --out DIR --per-class M --size S [--seed 0] [--val-per-class V]

`synth` writes a synthetic labelled set as real image files; `photos` writes random views of the sample
photographs scikit-image ships, one class per photograph (offline data for the built-in model). Both write
DIR/CLASS/*, or DIR/train/CLASS and DIR/val/CLASS when --val-per-class is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.datasets import TRAIN_SPLIT, VAL_SPLIT
from training.data.sample_photos import write_sample_photos
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
    photos = commands.add_parser("photos", help="write views of scikit-image's sample photographs (class per photo)")
    photos.add_argument("--out", required=True, help="output folder")
    photos.add_argument("--per-class", type=int, default=80, help="training images per class")
    photos.add_argument("--val-per-class", type=int, default=0, help="if > 0, also write OUT/val (and OUT/train)")
    photos.add_argument("--size", type=int, default=224, help="image side in pixels")
    photos.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.command == "synth":
        def write(folder: Path, per_class: int, seed: int) -> list[str]:
            return write_synthetic(folder, args.classes, per_class, args.size, seed, args.format)
    else:
        def write(folder: Path, per_class: int, seed: int) -> list[str]:
            return write_sample_photos(folder, per_class, args.size, seed)
    try:
        if args.val_per_class > 0:
            names = write(out / TRAIN_SPLIT, args.per_class, args.seed)
            write(out / VAL_SPLIT, args.val_per_class, args.seed + 1)
        else:
            names = write(out, args.per_class, args.seed)
    except (ValueError, OSError) as exc:
        print(f"lomar data {args.command}: {exc}", file=sys.stderr)
        return 2
    total = len(names) * (args.per_class + args.val_per_class)
    print(f"wrote {total} images of {len(names)} classes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
