"""The typed model card: exact JSON round trip, integer shapes, no building-machine paths, clear refusals."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from contracts.model_card import CARD_SCHEMA, ModelCard, ModelCardError, TensorSpec
from contracts.model_repository import CARD_FILE


def reconstruction_card() -> ModelCard:
    return ModelCard(name="lomar_reconstruction", task="reconstruct", format="onnx", precision="fp32",
                     backend="python", source_checkpoint="checkpoint-last.pth", source_sha256="ab" * 32,
                     architecture={"patch_size": 16, "depth": 2}, image_size=(224, 224),
                     inputs={"image": TensorSpec("UINT8", (3, 224, 224)), "mask": TensorSpec("BOOL", (14, 14))},
                     outputs={"reconstruction": TensorSpec("FP32", (3, 224, 224))},
                     parity={"onnxruntime": {"precision": "fp32"}}, opset=18, exported_at="2026-01-01T00:00:00+00:00",
                     software={"torch": "2.4"})


def test_round_trip_is_exact(tmp_path: Path) -> None:
    card = reconstruction_card()
    path = card.write(tmp_path)
    assert path == tmp_path / CARD_FILE
    assert ModelCard.read(tmp_path) == card
    assert ModelCard.from_json(card.to_json()) == card
    assert json.loads(path.read_text())["inputs"]["mask"] == {"data_type": "BOOL", "dims": [14, 14]}
    assert card.to_dict()["schema"] == CARD_SCHEMA


def test_mask_grid_is_read_as_integers() -> None:
    assert reconstruction_card().mask_grid == (14, 14)
    classifier = replace(reconstruction_card(), task="classify", inputs={"image": TensorSpec("UINT8", (3, 8, 8))})
    assert classifier.mask_grid is None
    assert TensorSpec("BOOL", (14, 14)).describe() == "BOOL [B,14,14]"


@pytest.mark.parametrize("source", ["/home/builder/runs/checkpoint-last.pth", "runs/checkpoint-last.pth", ""])
def test_source_checkpoint_must_be_a_file_name(source: str) -> None:
    with pytest.raises(ModelCardError, match="file name"):
        replace(reconstruction_card(), source_checkpoint=source)


def test_old_or_malformed_cards_are_refused(tmp_path: Path) -> None:
    values = reconstruction_card().to_dict()
    old = {**values, "inputs": {"mask": "BOOL [B,14,14]"}}
    del old["schema"]
    for bad, message in ((old, "schema 1"), ({**values, "extra": 1}, "unknown"),
                         ({**values, "inputs": {"mask": "BOOL [B,14,14]"}}, "malformed"),
                         ({k: v for k, v in values.items() if k != "task"}, "malformed"), ([], "JSON object")):
        with pytest.raises(ModelCardError, match=message):
            ModelCard.from_dict(bad)
    with pytest.raises(ModelCardError, match="not JSON"):
        ModelCard.from_json("{")
    with pytest.raises(ModelCardError, match="cannot read"):
        ModelCard.read(tmp_path)
