"""A synthetic labelled image set written as real image files (ImageFolder layout), for demos and tests.

Class c draws one shape (circle, square, triangle, cross, ring, bars, ...) in one hue on a noisy background of
another; position, size, and brightness vary per image. Classes differ in both shape and colour, so even a tiny
model learns them in a few dozen steps.
"""
from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bars", "diamond", "checker")
FORMATS = {"png": "PNG", "jpg": "JPEG"}


def class_name(index: int) -> str:
    return f"class_{index:03d}_{SHAPES[index % len(SHAPES)]}"


def _colour(hue: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        third = half / 3
        draw.rectangle((cx - third, y0, cx + third, y1), fill=fill)
        draw.rectangle((x0, cy - third, x1, cy + third), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(half / 3)))
    elif shape == "bars":
        step = max(2, (x1 - x0) / 5)
        for i in range(0, 5, 2):
            draw.rectangle((x0 + i * step, y0, x0 + (i + 1) * step, y1), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    else:  # checker
        step = (x1 - x0) / 4
        for i in range(4):
            for j in range((i % 2), 4, 2):
                draw.rectangle((x0 + j * step, y0 + i * step, x0 + (j + 1) * step, y0 + (i + 1) * step), fill=fill)


def render(class_index: int, num_classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of class `class_index`: shape and hue fixed by the class, the rest random."""
    hue = class_index / max(1, num_classes)
    background = _colour(hue + 0.5, 0.25 + 0.15 * rng.random())
    noise = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(np.array(background, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    extent = size * (0.45 + 0.35 * rng.random())
    x0 = rng.random() * (size - extent)
    y0 = rng.random() * (size - extent)
    fill = _colour(hue + 0.03 * rng.standard_normal(), 0.75 + 0.25 * rng.random())
    draw_shape(ImageDraw.Draw(image), SHAPES[class_index % len(SHAPES)], (x0, y0, x0 + extent, y0 + extent), fill)
    return image


def write_synthetic(out: str | Path, classes: int, per_class: int, size: int, seed: int = 0,
                    image_format: str = "png") -> list[str]:
    """Write OUT/CLASS/NNNNN.EXT for every class; returns the class names (sorted, as ImageFolder sees them)."""
    if classes < 1 or per_class < 1 or size < 8:
        raise ValueError("need classes >= 1, per_class >= 1 and size >= 8")
    if image_format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}")
    rng = np.random.default_rng(seed)
    names = [class_name(index) for index in range(classes)]
    digits = max(5, int(math.log10(per_class)) + 1)
    for index, name in enumerate(names):
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            image = render(index, classes, size, rng)
            image.save(folder / f"{number:0{digits}d}.{image_format}", FORMATS[image_format])
    return names
