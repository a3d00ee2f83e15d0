"""What an export puts in its model card (contracts.model_card.ModelCard) beyond the plan: tensors in the card's
form, the software that made it, and when."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata

from contracts.model_card import TensorSpec
from export.triton_config import TensorConfig

SOFTWARE = ("lomar", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt")


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def tensor_specs(tensors: Iterable[TensorConfig]) -> dict[str, TensorSpec]:
    """Name -> TensorSpec ("TYPE_UINT8" becomes "UINT8"; dims without the batch axis, as in config.pbtxt)."""
    return {t.name: TensorSpec(t.data_type.removeprefix("TYPE_"), t.dims) for t in tensors}


def utc_now() -> str:
    """ISO 8601 time of the export, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
