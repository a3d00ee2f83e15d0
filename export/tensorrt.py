"""TensorRT engines from the exported ONNX file, where TensorRT (and a CUDA GPU) is present.

The engine has one optimisation profile for batch 1..max_batch_size at the exported image size; fp16 sets the
builder's FP16 flag (layers TensorRT finds inaccurate in fp16 stay fp32). Without the `tensorrt` Python package,
`--format tensorrt` stops with TensorRTUnavailableError before anything is written.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from export.errors import ExportError, TensorRTUnavailableError

LOGGER = logging.getLogger(__name__)
WORKSPACE_BYTES = 1 << 30
Arrays = dict[str, np.ndarray]


def require_tensorrt() -> ModuleType:
    """The tensorrt module, or a clear error saying how to get it or what to use instead."""
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailableError(
            "--format tensorrt needs NVIDIA TensorRT, which is not installed here: install the `tensorrt` Python "
            "package on a host with an NVIDIA GPU (e.g. inside NVIDIA's Triton container), or export "
            "`--format onnx --backend onnxruntime --ort-tensorrt` to let Triton's ONNX Runtime backend build "
            "TensorRT engines itself") from error
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("--format tensorrt builds and verifies the engine on a CUDA GPU; none is "
                                       "visible here")
    return tensorrt


def build_engine(onnx_path: Path, plan_path: Path, input_dims: dict[str, tuple[int, ...]], max_batch_size: int,
                 precision: str) -> None:
    """Parse `onnx_path` and write a serialised engine to `plan_path`.

    Args:
        input_dims: per input, its dims without the batch axis, e.g. {"image": (3, 224, 224)}.
    """
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    optimum = min(8, max_batch_size)
    for name, dims in input_dims.items():
        profile.set_shape(name, (1, *dims), (optimum, *dims), (max_batch_size, *dims))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    plan_path.write_bytes(bytes(plan))
    LOGGER.info("built TensorRT engine %s (%s, batch 1..%d)", plan_path, precision, max_batch_size)


def engine_runner(plan_path: Path, output_names: list[str]) -> Callable[[Arrays], Arrays]:
    """A function running the engine on numpy inputs (for verification), with torch CUDA tensors as buffers."""
    trt = require_tensorrt()
    import torch

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()

    def run(inputs: Arrays) -> Arrays:
        stream = torch.cuda.Stream()
        keep = {name: torch.from_numpy(array).cuda() for name, array in inputs.items()}
        for name, tensor in keep.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in output_names:
            shape = tuple(context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}

    return run
