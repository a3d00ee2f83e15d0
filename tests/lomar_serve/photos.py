"""Real photographs for the gateway tests: scikit-image's bundled sample images, encoded as JPEG/PNG bytes."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# scikit-image sample photographs (bundled with the package, no download).
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
               "coins")


def photo_array(name: str) -> np.ndarray:
    """uint8 (H, W, 3) or (H, W)."""
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def encode(array: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo_bytes(name: str, fmt: str = "JPEG") -> bytes:
    return encode(photo_array(name), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
