"""A FAKE in-process inference backend, ONLY for fast unit tests of the HTTP layer (routes, errors, metrics).

It follows the Model I/O contract with trivial numpy arithmetic. Everything that must be true of the real system
is tested end to end against the real Triton (tests/lomar_serve/gateway/e2e/).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lomar_serve.gateway.errors import ModelNotFound, TritonUnavailable
from lomar_serve.gateway.inference import InferResult

NUM_CLASSES, DIM, SIZE, PATCH = 10, 16, 32, 8


def _config(name: str) -> dict[str, Any]:
    image = {"name": "image", "data_type": "TYPE_UINT8", "dims": [3, SIZE, SIZE]}
    if name == "fake_classifier":
        return {"name": name, "max_batch_size": 4, "input": [image],
                "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [NUM_CLASSES],
                            "label_filename": "labels.txt"},
                           {"name": "embedding", "data_type": "TYPE_FP32", "dims": [DIM]}]}
    grid = SIZE // PATCH
    return {"name": name, "max_batch_size": 4,
            "input": [image, {"name": "mask", "data_type": "TYPE_BOOL", "dims": [grid, grid]}],
            "output": [{"name": "reconstruction", "data_type": "TYPE_FP32", "dims": [3, SIZE, SIZE]}]}


class FakeBackend:
    """Classifier `fake_classifier` (logits = mean colour projections), reconstructor `fake_reconstructor`
    (reconstruction = inverted image). `down = True` simulates Triton being unreachable."""

    models = ("fake_classifier", "fake_reconstructor")

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[str, int]] = []  # (model, batch size) per infer call
        rng = np.random.default_rng(0)
        self._projection = rng.standard_normal((3, NUM_CLASSES))
        self._embedding = rng.standard_normal((3, DIM))

    def _check(self, name: str | None = None) -> None:
        if self.down:
            raise TritonUnavailable("fake Triton is down", retry_after_s=2)
        if name is not None and name not in self.models:
            raise ModelNotFound(f"unknown model {name!r}")

    async def server_live(self) -> bool:
        return not self.down

    async def repository_index(self) -> list[dict[str, str]]:
        self._check()
        return [{"name": name, "version": "1", "state": "READY"} for name in self.models]

    async def model_config(self, name: str) -> dict[str, Any]:
        self._check(name)
        return _config(name)

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                    version: str = "", class_count: Mapping[str, int] | None = None) -> InferResult:
        self._check(model)
        image = inputs["image"].astype(np.float64) / 255.0  # (B, 3, H, W)
        self.calls.append((model, len(image)))
        colour = image.mean(axis=(2, 3))  # (B, 3)
        values = {"logits": colour @ self._projection, "embedding": colour @ self._embedding + 0.1,
                  "reconstruction": 255.0 - inputs["image"].astype(np.float64)}
        return InferResult(outputs={name: values[name].astype(np.float32) for name in outputs}, model_version="1")

    async def close(self) -> None:
        pass
