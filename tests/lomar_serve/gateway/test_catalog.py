"""Reading Triton model configurations against the Model I/O contract."""
from __future__ import annotations

import pytest

from lomar_serve.gateway.catalog import spec_from_config
from lomar_serve.gateway.errors import WrongModelKind

IMAGE = {"name": "image", "data_type": "TYPE_UINT8", "dims": [3, 224, 224]}


def _config(inputs, outputs, batch=8):
    return {"name": "m", "max_batch_size": batch, "input": inputs, "output": outputs}


def test_classifier_and_reconstructor():
    spec = spec_from_config(_config([IMAGE], [{"name": "logits", "dims": [10]},
                                              {"name": "embedding", "dims": [192]}]), "3", ("a",) * 10)
    assert (spec.kind, spec.version, spec.image_size, spec.embedding_dim, spec.max_batch_size) == \
        ("classifier", "3", (224, 224), 192, 8)
    spec = spec_from_config(_config([IMAGE, {"name": "mask", "dims": [14, 14]}],
                                    [{"name": "reconstruction", "dims": [3, 224, 224]}]), "1")
    assert spec.kind == "reconstructor" and spec.grid == (14, 14) and spec.patch_size == 16


@pytest.mark.parametrize("config", [
    _config([{**IMAGE, "data_type": "TYPE_FP32"}], [{"name": "logits", "dims": [10]}]),  # float input
    _config([{**IMAGE, "dims": [3, -1, -1]}], [{"name": "logits", "dims": [10]}]),  # variable size
    _config([IMAGE], [{"name": "logits", "dims": [10]}, {"name": "embedding", "dims": [8]}], batch=0),
    _config([IMAGE], [{"name": "scores", "dims": [10]}]),  # neither kind
    _config([IMAGE, {"name": "mask", "dims": [13, 14]}], [{"name": "reconstruction", "dims": [3, 224, 224]}]),
])
def test_contract_violations(config):
    with pytest.raises(WrongModelKind):
        spec_from_config(config, "1")


@pytest.mark.parametrize("group, expected", [("KIND_GPU", ("CUDAExecutionProvider",)),
                                             ("KIND_CPU", ("CPUExecutionProvider",))])
def test_spec_says_what_the_versions_run_on(group, expected):
    config = {**_config([IMAGE], [{"name": "logits", "dims": [10]}, {"name": "embedding", "dims": [192]}]),
              "backend": "python", "instance_group": [{"kind": group, "count": 1}]}
    assert spec_from_config(config, "1").runs_on == expected
    assert spec_from_config({**config, "backend": "custom"}, "1").runs_on == ()  # not a backend export writes
