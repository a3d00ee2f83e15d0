"""A small labelled photo set built offline from the sample photographs scikit-image ships.

Each class is one photograph; its images are random crops (scale 0.25-1 of the area, aspect 3/4-4/3), flips,
rotations up to 15 degrees and brightness/contrast/saturation jitter of it, written as real JPEG files in
ImageFolder layout. A model trained on it recognises *these scenes* (the cat Chelsea, a coffee cup, the
astronaut portrait, ...), not general categories: it exists so that the built-in model runs on real photographs
with no download.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# class name -> scikit-image loader name
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "brick_wall": "brick",
    "cameraman": "camera",
    "cat": "chelsea",
    "clock": "clock",
    "coffee_cup": "coffee",
    "coins": "coins",
    "colour_wheel": "colorwheel",
    "galaxies": "hubble_deep_field",
    "grass": "grass",
    "gravel": "gravel",
    "horse_silhouette": "horse",
    "microscopy_tissue": "immunohistochemistry",
    "moon_surface": "moon",
    "motorcycle": "stereo_motorcycle",
    "printed_text": "page",
    "retina": "retina",
    "rocket": "rocket",
}


def load_photo(loader: str) -> Image.Image:
    """One scikit-image sample as an RGB PIL image (grey and binary images are expanded, alpha dropped)."""
    from skimage import data  # optional dependency: only this generator needs it

    pixels = getattr(data, loader)()
    if isinstance(pixels, tuple):  # stereo pairs: take the left view
        pixels = pixels[0]
    pixels = np.asarray(pixels)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return Image.fromarray(pixels[..., :3].astype(np.uint8), "RGB")


def random_view(photo: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A RandomResizedCrop-style view of `photo`, size x size, with flip, small rotation and colour jitter."""
    width, height = photo.size
    for _ in range(10):
        area = width * height * rng.uniform(0.25, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if w <= width and h <= height:
            break
    else:
        w = h = min(width, height)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    view = photo.crop((left, top, left + w, top + h)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    view = view.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(float(rng.uniform(0.7, 1.3)))
    return view


def write_sample_photos(out: str | Path, per_class: int, size: int, seed: int = 0) -> list[str]:
    """Write OUT/CLASS/NNNNN.jpg for every sample photograph; returns the class names (sorted)."""
    if per_class < 1 or size < 16:
        raise ValueError("need per_class >= 1 and size >= 16")
    rng = np.random.default_rng(seed)
    names = sorted(PHOTOS)
    for name in names:
        photo = load_photo(PHOTOS[name])
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            random_view(photo, size, rng).save(folder / f"{number:05d}.jpg", "JPEG", quality=90)
    return names
