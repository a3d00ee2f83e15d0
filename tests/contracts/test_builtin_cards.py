"""The checked-in built-in models' cards: current schema, no building-machine paths, and the same tensors as the
config.pbtxt Triton serves them with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from contracts.model_card import ModelCard
from contracts.model_repository import CONFIG_FILE, DEFAULT_MODEL_NAMES, versions

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def strings(value: Any) -> list[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


@pytest.mark.parametrize("task, name", sorted(DEFAULT_MODEL_NAMES.items()))
def test_builtin_card_matches_its_config(task: str, name: str) -> None:
    model_dir = REPOSITORY / name
    config = text_format.Parse((model_dir / CONFIG_FILE).read_text(), model_config_pb2.ModelConfig())
    assert versions(model_dir), f"{name} has no version"
    for version in versions(model_dir):
        card = ModelCard.read(model_dir / str(version))
        assert (card.name, card.task) == (name, task)
        assert not [text for text in strings(card.to_dict()) if text.startswith("/")]  # no absolute paths
        for tensors, declared in ((card.inputs, config.input), (card.outputs, config.output)):
            type_name = model_config_pb2.DataType.Name
            assert {t.name: (type_name(t.data_type).removeprefix("TYPE_"), tuple(t.dims)) for t in declared} == {
                key: (spec.data_type, spec.dims) for key, spec in tensors.items()}
        assert card.image_size == tuple(card.inputs["image"].dims[1:])


@pytest.mark.parametrize("name", sorted(DEFAULT_MODEL_NAMES.values()))
def test_builtin_versions_carry_the_current_runner(name: str) -> None:
    """The built-in models run the project's runner as it is: what /v1/models says they run on
    (contracts/triton_config.py runs_on) is the rule this runner enforces."""
    runner = (REPOSITORY.parent / "lomar_serve" / "triton" / "onnx_runner.py").read_bytes()
    for version in versions(REPOSITORY / name):
        assert (REPOSITORY / name / str(version) / "model.py").read_bytes() == runner, f"{name}/{version}/model.py"
