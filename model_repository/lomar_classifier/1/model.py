"""Triton Python-backend model that runs the version's `model.onnx` with ONNX Runtime.

`lomar export --backend python` copies this file, unchanged, into every version directory as `model.py`, so a
model repository is self-contained: it needs only numpy and onnxruntime in the environment of the `python3` that
Triton's Python stub runs (and it keeps working if this project changes later). Hence this file imports nothing
from the project and never torch.

Behaviour:
- Requests gathered by Triton's dynamic batcher are concatenated along the batch axis, run once, and the outputs
  split back per request.
- A request with a missing or malformed input gets its own error response; the other requests of the batch are
  served and the model stays loaded.
- config.pbtxt `parameters` (all optional, string values):
    execution_provider: "auto" (CUDA when onnxruntime has it, else CPU), "cuda" or "cpu"
    intra_op_threads:   ONNX Runtime intra-op threads, "0" = ONNX Runtime's default
    inter_op_threads:   ONNX Runtime inter-op threads, "0" = ONNX Runtime's default
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILE = "model.onnx"
NUMPY_TYPES = {
    "TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT8": np.int8, "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
}
PROVIDERS = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class RunnerSettings:
    """Settings read from config.pbtxt `parameters`."""

    execution_provider: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 0

    @classmethod
    def from_model_config(cls, model_config: dict) -> "RunnerSettings":
        values = {key: entry["string_value"] for key, entry in model_config.get("parameters", {}).items()}
        provider = values.get("execution_provider", "auto")
        if provider not in PROVIDERS:
            raise ValueError(f"parameter execution_provider must be one of {PROVIDERS}, got {provider!r}")
        return cls(provider, int(values.get("intra_op_threads", 0)), int(values.get("inter_op_threads", 0)))

    def providers(self, device_id: int) -> list:
        """ONNX Runtime execution providers, in order of preference."""
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if self.execution_provider == "cuda" and not has_cuda:
            raise RuntimeError("execution_provider 'cuda' was asked for, but this onnxruntime has no CUDA provider "
                               "(install onnxruntime-gpu)")
        if self.execution_provider != "cpu" and has_cuda:
            return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class InputSpec:
    """One input of the model: name, element type and per-item shape (without the batch axis)."""

    name: str
    dtype: type
    dims: tuple[int, ...]

    def problem(self, array: np.ndarray | None) -> str | None:
        """Why `array` (B, *dims) cannot be this input, or None if it can."""
        if array is None:
            return f"input {self.name!r} is missing"
        if array.dtype != self.dtype:
            return f"input {self.name!r} must be {np.dtype(self.dtype).name}, got {array.dtype.name}"
        if array.ndim != len(self.dims) + 1 or array.shape[0] < 1 or any(
                want not in (-1, got) for want, got in zip(self.dims, array.shape[1:])):
            return f"input {self.name!r} must have shape [B, {', '.join(map(str, self.dims))}], got {list(array.shape)}"
        return None


def input_specs(model_config: dict) -> list[InputSpec]:
    return [InputSpec(entry["name"], NUMPY_TYPES[entry["data_type"]], tuple(int(d) for d in entry["dims"]))
            for entry in model_config["input"]]


def run_batched(session: ort.InferenceSession, feeds: list[dict[str, np.ndarray]],
                output_names: list[str]) -> list[dict[str, np.ndarray]]:
    """Run several requests' inputs as one batch.

    Args:
        feeds: per request, {input name: array (B_i, ...)}; all requests have the same input names.
    Returns:
        per request, {output name: array (B_i, ...)}.
    """
    sizes = [len(next(iter(feed.values()))) for feed in feeds]
    if len(feeds) == 1:
        batch = feeds[0]
    else:
        batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
    outputs = session.run(output_names, batch)
    bounds = np.cumsum(sizes)[:-1]
    per_output = [np.split(output, bounds) for output in outputs]  # [output][request]
    return [{name: np.ascontiguousarray(parts[i]) for name, parts in zip(output_names, per_output)}
            for i in range(len(feeds))]


class TritonPythonModel:
    """The Python-backend entry points: initialize, execute, finalize."""

    def initialize(self, args: dict) -> None:
        model_config = json.loads(args["model_config"])
        settings = RunnerSettings.from_model_config(model_config)
        self.inputs = input_specs(model_config)
        self.output_names = [entry["name"] for entry in model_config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILE)
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        self.session = ort.InferenceSession(path, options, providers=settings.providers(device_id))
        pb_utils.Logger.log_info(f"{args['model_name']} v{args['model_version']}: {path} on "
                                 f"{self.session.get_providers()[0]}")

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        feeds, served = [], []
        for index, request in enumerate(requests):
            arrays = {}
            for spec in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                arrays[spec.name] = None if tensor is None else tensor.as_numpy()
            problems = [p for p in (spec.problem(arrays[spec.name]) for spec in self.inputs) if p]
            if problems:
                responses[index] = error_response("; ".join(problems), pb_utils.TritonError.INVALID_ARG)
            else:
                feeds.append(arrays)
                served.append(index)
        if feeds:
            try:
                results = run_batched(self.session, feeds, self.output_names)
            except Exception as error:  # an ONNX Runtime failure fails these requests, never the model
                results = None
                message = f"inference failed: {type(error).__name__}: {error}"
            for position, index in enumerate(served):
                if results is None:
                    responses[index] = error_response(message, pb_utils.TritonError.INTERNAL)
                else:
                    tensors = [pb_utils.Tensor(name, array) for name, array in results[position].items()]
                    responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.session = None


def error_response(message: str, code: int) -> object:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
