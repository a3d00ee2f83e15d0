"""The model card in every version directory (REPO/NAME/VERSION/model_card.json): where the model came from, what
it takes and gives, and how faithfully the exported file reproduces PyTorch.

Export writes it; the gateway shows it (GET /v1/models) and reads the class names from it; a job's verification
reads the image size, the classes and the mask grid from it. Tensor shapes are integers, never display strings.
The card names the source checkpoint by file name and sha256 only: no path of the machine that built it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from contracts.model_repository import CARD_FILE, TASKS

CARD_SCHEMA = 2  # 1: inputs/outputs as display strings and an absolute source path


class ModelCardError(ValueError):
    """A model card file is missing, unreadable or not of this schema."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the exported model."""

    data_type: str  # Triton's type without the TYPE_ prefix: "UINT8", "BOOL", "FP32"
    dims: tuple[int, ...]  # one item's shape; every tensor also has a leading batch dimension B

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))

    def describe(self) -> str:
        """'UINT8 [B,3,224,224]' (for people; code reads `dims`)."""
        return f"{self.data_type} [B,{','.join(map(str, self.dims))}]"


@dataclass(frozen=True)
class ModelCard:
    """Description of one exported version; `to_json`/`from_json` round-trip it exactly."""

    name: str  # Triton model name
    task: str  # "classify" or "reconstruct"
    format: str  # "onnx" or "tensorrt"
    precision: str  # "fp32" or "fp16"
    backend: str  # Triton backend: "python", "onnxruntime" or "tensorrt"
    source_checkpoint: str  # the checkpoint's file name (no directory)
    source_sha256: str
    architecture: dict[str, Any]  # LoMaRConfig fields
    image_size: tuple[int, int]  # (H, W) the model takes
    inputs: dict[str, TensorSpec]  # "image": UINT8 (3, H, W); reconstruction also "mask": BOOL (h, w)
    outputs: dict[str, TensorSpec]
    parity: dict[str, Any]  # export/verify.py figures per runtime
    classes: tuple[str, ...] = ()  # classifiers: the label of each logit
    opset: int = 0  # ONNX opset
    exported_at: str = ""  # ISO 8601, UTC
    software: dict[str, str] = field(default_factory=dict)  # distribution -> version used by the export
    graph: str = "standard"  # the ONNX graph: "standard" operators, or "ort_fused" (ONNX Runtime's fused attention)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ModelCardError(f"model card task must be one of {TASKS}, got {self.task!r}")
        if not self.source_checkpoint or Path(self.source_checkpoint).name != self.source_checkpoint:
            raise ModelCardError(f"source_checkpoint must be a file name, got {self.source_checkpoint!r}")
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "classes", tuple(self.classes))

    @property
    def mask_grid(self) -> tuple[int, int] | None:
        """(h, w) patch grid of a reconstruction model's `mask` input; None for other models."""
        mask = self.inputs.get("mask")
        return (mask.dims[0], mask.dims[1]) if mask is not None and len(mask.dims) == 2 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return json.loads(json.dumps(asdict(self)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCard:
        """Raises ModelCardError for another schema, unknown or missing keys, or malformed tensors."""
        if not isinstance(values, dict):
            raise ModelCardError("a model card is a JSON object")
        if values.get("schema") != CARD_SCHEMA:
            raise ModelCardError(f"model card schema {values.get('schema', 1)!r} is not {CARD_SCHEMA}: "
                                 "export the model again")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ModelCardError(f"unknown model card field(s): {', '.join(unknown)}")
        try:
            tensors = {key: {name: TensorSpec(**spec) for name, spec in values[key].items()}
                       for key in ("inputs", "outputs")}
            return cls(**{**values, **tensors})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelCardError(f"malformed model card: {error}") from error

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            values = json.loads(text)
        except ValueError as error:
            raise ModelCardError(f"model card is not JSON: {error}") from error
        return cls.from_dict(values)

    def write(self, version_dir: Path) -> Path:
        """Write VERSION_DIR/model_card.json; returns its path."""
        path = version_dir / CARD_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        """VERSION_DIR/model_card.json; ModelCardError when it is missing, unreadable or malformed."""
        path = version_dir / CARD_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ModelCardError(f"cannot read {path}: {error}") from error
        try:
            return cls.from_json(text)
        except ModelCardError as error:
            raise ModelCardError(f"{path}: {error}") from error
