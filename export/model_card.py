"""The model card written into every version directory (model_card.json): where the model came from and how
faithfully the exported artefact reproduces PyTorch."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

CARD_FILE = "model_card.json"


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class ModelCard:
    """JSON-serialisable description of one exported version."""

    name: str
    task: str  # "classify" or "reconstruct"
    format: str  # "onnx" or "tensorrt"
    precision: str  # "fp32" or "fp16"
    backend: str  # Triton flavour: "python", "onnxruntime" or "tensorrt"
    source_checkpoint: str
    source_sha256: str
    architecture: dict[str, Any]  # LoMaRConfig fields
    image_size: tuple[int, int]  # (H, W) the graph takes
    inputs: dict[str, str]  # name -> "UINT8 [B,3,H,W]" ...
    outputs: dict[str, str]
    parity: dict[str, Any]  # figures from export/verify.py
    classes: tuple[str, ...] = ()  # classifiers: label of each logit
    opset: int = 0
    exported_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    software: dict[str, str] = field(
        default_factory=lambda: package_versions("lomar", "torch", "onnx", "onnxruntime", "onnxruntime-gpu",
                                                 "tensorrt"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def write(self, directory: Path) -> Path:
        path = directory / CARD_FILE
        path.write_text(self.to_json())
        return path
