"""config.pbtxt generation: every flavour parses with Triton's schema and says what the issue asks for."""
from __future__ import annotations

import pytest

from export.errors import ExportError
from export.triton_config import (SERVING_PROFILES, DynamicBatchingConfig, TensorConfig, TritonModelConfig,
                                  parse_pbtxt)
from tritonclient.grpc import model_config_pb2 as pb

IMAGE = TensorConfig("image", "TYPE_UINT8", (3, 224, 224))
OUTPUTS = (TensorConfig("logits", "TYPE_FP32", (10,), label_filename="labels.txt"),
           TensorConfig("embedding", "TYPE_FP32", (192,)))


def make(flavour: str, **overrides) -> TritonModelConfig:
    values = dict(name="lomar_classifier", flavour=flavour, max_batch_size=16, inputs=(IMAGE,), outputs=OUTPUTS,
                  dynamic_batching=DynamicBatchingConfig((8, 16), 500))
    return TritonModelConfig(**{**values, **overrides})


def test_python_flavour_config_parses_with_schema():
    parsed = parse_pbtxt(make("python", parameters=(("intra_op_threads", "2"),)).to_pbtxt())
    assert parsed.backend == "python" and parsed.max_batch_size == 16
    assert [(t.name, t.data_type, list(t.dims)) for t in parsed.input] == [("image", pb.TYPE_UINT8, [3, 224, 224])]
    assert parsed.output[0].label_filename == "labels.txt" and parsed.output[1].label_filename == ""
    assert list(parsed.dynamic_batching.preferred_batch_size) == [8, 16]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
    assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert parsed.parameters["intra_op_threads"].string_value == "2"
    warmup = parsed.model_warmup[0]
    assert warmup.batch_size == 1 and warmup.inputs["image"].zero_data


def test_onnxruntime_flavour_can_enable_tensorrt_accelerator():
    parsed = parse_pbtxt(make("onnxruntime", instance_kind="KIND_GPU", ort_tensorrt_precision="FP16").to_pbtxt())
    assert parsed.backend == "onnxruntime" and parsed.default_model_filename == "model.onnx"
    accelerator = parsed.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU


def test_tensorrt_flavour_is_a_plan_platform():
    parsed = parse_pbtxt(make("tensorrt", instance_kind="KIND_GPU").to_pbtxt())
    assert parsed.platform == "tensorrt_plan" and parsed.backend == ""
    assert parsed.default_model_filename == "model.plan"


@pytest.mark.parametrize("overrides", [
    dict(flavour="tflite"),
    dict(dynamic_batching=DynamicBatchingConfig((32,))),
    dict(warmup_batch_sizes=(0,)),
    dict(instance_kind="KIND_TPU"),
    dict(ort_tensorrt_precision="FP16"),  # python flavour has no ONNX Runtime accelerator setting
])
def test_invalid_configs_are_refused(overrides):
    with pytest.raises(ExportError):
        make(**{"flavour": "python", **overrides})


def test_tensor_types_and_dims_are_checked():
    with pytest.raises(ExportError, match="data type"):
        TensorConfig("image", "TYPE_UINT7", (3, 4, 4))
    with pytest.raises(ExportError, match="dims"):
        TensorConfig("image", "TYPE_UINT8", (3, -1, 4))


def test_unparseable_text_is_an_export_error():
    with pytest.raises(ExportError, match="invalid config.pbtxt"):
        parse_pbtxt('name: "x" max_batch_size: "many"')


@pytest.mark.parametrize("device, max_batch_size, preferred", [("cpu", 32, (8, 32)), ("cpu", 4, (4,)),
                                                               ("gpu", 64, ()), ("gpu", 16, ())])
def test_serving_profiles_set_the_dynamic_batcher_for_their_device(device, max_batch_size, preferred):
    batching = SERVING_PROFILES[device].dynamic_batching(max_batch_size, 700)
    assert batching == DynamicBatchingConfig(preferred, 700)
    parsed = parse_pbtxt(make("python", max_batch_size=max_batch_size, dynamic_batching=batching,
                              instance_kind=SERVING_PROFILES[device].instance_kind,
                              instance_count=SERVING_PROFILES[device].instances).to_pbtxt())
    assert tuple(parsed.dynamic_batching.preferred_batch_size) == preferred
    assert parsed.instance_group[0].count == SERVING_PROFILES[device].instances
