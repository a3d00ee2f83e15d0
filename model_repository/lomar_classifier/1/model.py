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
    execution_provider: "auto" (the instance group decides: KIND_GPU instances run on CUDA, the others on the CPU),
                        "cuda" (every instance on CUDA) or "cpu" (every instance on the CPU; not with KIND_GPU)
    intra_op_threads:   ONNX Runtime intra-op threads, "0" = ONNX Runtime's default
    inter_op_threads:   ONNX Runtime inter-op threads, "0" = ONNX Runtime's default
    force_spinning_stop: "0" (ONNX Runtime's default: intra-op threads go on spin-waiting after a run, for the next
                        one) or "1" (they spin only while a run lasts and stop when it returns: on a CPU shared with
                        the gateway's decoding and HTTP, spinning between requests burns the cores those need)
- Never a silent CPU fallback: ONNX Runtime creates a session on the CPU, with only a warning, when the CUDA
  provider it was given cannot be loaded (a CPU-only onnxruntime; an onnxruntime-gpu built for another CUDA than
  the image's; cuDNN missing). An instance that must run on CUDA therefore checks the providers its session
  actually runs on (`get_providers()`, not `get_available_providers()`, which a GPU build fills even where its
  libraries cannot load) and refuses to initialise, so the version never becomes READY and Triton's model status
  carries the reason. The provider a READY version runs on thus follows from its config alone
  (contracts/triton_config.py `runs_on` states the same rule for the readers of configs).
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
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderError(RuntimeError):
    """The session cannot run on the execution provider the model's config asks for; the version must not load."""


@dataclass(frozen=True)
class RunnerSettings:
    """Settings read from config.pbtxt `parameters`."""

    execution_provider: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    force_spinning_stop: bool = False

    @classmethod
    def from_model_config(cls, model_config: dict) -> "RunnerSettings":
        values = {key: entry["string_value"] for key, entry in model_config.get("parameters", {}).items()}
        provider = values.get("execution_provider", "auto")
        if provider not in PROVIDERS:
            raise ValueError(f"parameter execution_provider must be one of {PROVIDERS}, got {provider!r}")
        spinning_stop = values.get("force_spinning_stop", "0")
        if spinning_stop not in ("0", "1"):
            raise ValueError(f"parameter force_spinning_stop must be '0' or '1', got {spinning_stop!r}")
        return cls(provider, int(values.get("intra_op_threads", 0)), int(values.get("inter_op_threads", 0)),
                   spinning_stop == "1")

    def session_options(self) -> ort.SessionOptions:
        """ONNX Runtime's options for the session: its thread pools."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.add_session_config_entry("session.force_spinning_stop", "1" if self.force_spinning_stop else "0")
        return options

    def wanted(self, instance_kind: str) -> str:
        """The provider an instance must run on; `instance_kind` as Triton names it: "GPU", "CPU" or "MODEL"."""
        if self.execution_provider == "cpu" and instance_kind == "GPU":
            raise ProviderError("execution_provider 'cpu' contradicts the KIND_GPU instance group: set one of them")
        if self.execution_provider == "cuda" or (self.execution_provider == "auto" and instance_kind == "GPU"):
            return CUDA
        return CPU

    def providers(self, instance_kind: str, device_id: int) -> list:
        """ONNX Runtime execution providers for the session, in order of preference (CPU takes the nodes CUDA
        has no kernel for)."""
        if self.wanted(instance_kind) == CUDA:
            return [(CUDA, {"device_id": device_id}), CPU]
        return [CPU]

    def describe(self, instance_kind: str) -> str:
        return f"instance kind {instance_kind}, execution_provider {self.execution_provider!r}"


def open_session(path: str, settings: RunnerSettings, instance_kind: str, device_id: int,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the provider the config asks for.

    Raises:
        ProviderError: the session does not run on it (ONNX Runtime fell back to the CPU).
    """
    wanted = settings.wanted(instance_kind)
    session = ort.InferenceSession(path, options, providers=settings.providers(instance_kind, device_id))
    active = session.get_providers()
    if wanted not in active:
        raise ProviderError(refusal(wanted, settings.describe(instance_kind), active, ort.get_available_providers(),
                                    ort.__version__))
    return session


def refusal(wanted: str, asked_by: str, active: list[str], available: list[str], version: str) -> str:
    """Why a version refuses to load: what was asked, what the session runs on, and the likely cause."""
    head = (f"{wanted} was asked for ({asked_by}) but the ONNX Runtime session runs on {active}: refusing to "
            f"serve from the CPU under a GPU configuration. ")
    if wanted not in available:
        return head + (f"Likely cause: this onnxruntime {version} has no {wanted} (it offers {available}); install "
                       "onnxruntime-gpu, the build constraints-gpu.txt pins to the image's CUDA, in place of "
                       "onnxruntime.")
    return head + (f"Likely cause: onnxruntime {version} lists {wanted} but could not load it: the CUDA or cuDNN "
                   "libraries it was built for cannot be loaded here (an onnxruntime-gpu built for another CUDA major "
                   "than the image's, see constraints-gpu.txt; libcudnn missing; or no GPU visible to this process). "
                   "ONNX Runtime's warning in this log names the library.")


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
        options = settings.session_options()
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILE)
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        kind = str(args.get("model_instance_kind", "CPU"))
        name = f"{args['model_name']} v{args['model_version']} ({args.get('model_instance_name', kind)})"
        try:
            self.session = open_session(path, settings, kind, device_id, options)
        except ProviderError as error:
            raise ProviderError(f"{name}: {error}") from None
        pb_utils.Logger.log_info(f"{name}: {path} on {self.session.get_providers()}")

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
