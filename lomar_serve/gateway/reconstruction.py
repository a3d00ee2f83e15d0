"""Masked-reconstruction previews: the picture strip original | masked | reconstruction | reconstruction with the
visible patches pasted back (the hidden patches come from `contracts.reconstruction_mask.sample_mask`).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MASK_GREY = 127  # hidden patches in the "masked" panel
GAP = 4  # white pixels between panels and between rows


@dataclass(frozen=True)
class Panels:
    """The four pictures of one reconstruction, each uint8 (H, W, 3)."""

    original: np.ndarray
    masked: np.ndarray
    reconstruction: np.ndarray
    pasted: np.ndarray

    def strip(self) -> np.ndarray:
        """(H, 4 * W + 3 * GAP, 3): the panels side by side."""
        height = self.original.shape[0]
        gap = np.full((height, GAP, 3), 255, dtype=np.uint8)
        return np.concatenate([self.original, gap, self.masked, gap, self.reconstruction, gap, self.pasted], axis=1)

    def as_base64_pngs(self) -> dict[str, str]:
        names = ("strip", "original", "masked", "reconstruction", "pasted")
        arrays = (self.strip(), self.original, self.masked, self.reconstruction, self.pasted)
        return {name: base64.b64encode(encode_png(array)).decode("ascii") for name, array in zip(names, arrays)}


def compose_panels(image: np.ndarray, mask: np.ndarray, reconstruction: np.ndarray) -> Panels:
    """Build the four panels for one image.

    Args:
        image: uint8 (3, H, W), the model input.
        mask: bool (h, w), True = hidden; H and W are multiples of h and w (patch size p = H / h).
        reconstruction: float (3, H, W), pixel values 0..255 (the model's `reconstruction` output).
    """
    _, height, width = image.shape
    h, w = mask.shape
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"mask grid {mask.shape} does not tile image {image.shape}")
    patch = height // h
    hidden = np.repeat(np.repeat(mask, patch, axis=0), patch, axis=1)[:, :, None]  # (H, W, 1)
    original = image.transpose(1, 2, 0)  # (H, W, 3)
    predicted = np.clip(np.rint(reconstruction), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Panels(
        original=np.ascontiguousarray(original),
        masked=np.where(hidden, np.uint8(MASK_GREY), original),
        reconstruction=np.ascontiguousarray(predicted),
        pasted=np.where(hidden, predicted, original),
    )


def stack_rows(strips: list[np.ndarray]) -> np.ndarray:
    """Several strips (H, W', 3) one under another with a white gap: (N * H + (N - 1) * GAP, W', 3)."""
    rows: list[np.ndarray] = []
    for index, strip in enumerate(strips):
        if index:
            rows.append(np.full((GAP, strip.shape[1], 3), 255, dtype=np.uint8))
        rows.append(strip)
    return np.concatenate(rows, axis=0)


def strips_png(panels: list[Panels]) -> bytes:
    """One PNG with a strip per image, one under another."""
    return encode_png(stack_rows([p.strip() for p in panels]))


def encode_png(array: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (fast compression: previews, not archives)."""
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
