"""A Triton model's `config.pbtxt`, generated from a typed config and validated against Triton's protobuf schema.

The schema is `model_config.proto` as shipped by tritonclient (`tritonclient.grpc.model_config_pb2`). Every
rendered config is parsed back with it and must equal what was built, so a config Triton cannot read is never
written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from contracts.model_repository import MODEL_FILES
from contracts.triton_config import ConfigError, parse_config
from export.errors import ExportError

FLAVOURS = tuple(MODEL_FILES)  # Triton backends an export can target
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU")


@dataclass(frozen=True)
class TensorConfig:
    """One input or output; dims exclude the batch axis."""

    name: str
    data_type: str  # a Triton DataType name, e.g. "TYPE_UINT8"
    dims: tuple[int, ...]
    label_filename: str = ""  # outputs only: the classification label file, relative to the model directory

    def __post_init__(self) -> None:
        if not self.name:
            raise ExportError("a tensor needs a name")
        if self.data_type not in pb.DataType.keys():
            raise ExportError(f"unknown Triton data type {self.data_type!r}")
        if not self.dims or any(d < 1 for d in self.dims):
            raise ExportError(f"tensor {self.name!r} needs positive dims, got {self.dims}")


@dataclass(frozen=True)
class DynamicBatchingConfig:
    """How long the scheduler waits to gather requests, and the batch sizes it prefers to form."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 1000


@dataclass(frozen=True)
class ServingProfile:
    """Where Triton runs a model and the scheduling that suits that device: the instance kind, and export's
    defaults for --instances, --max-batch-size and --max-queue-delay-us."""

    instance_kind: str
    instances: int  # KIND_GPU: per GPU
    max_batch_size: int
    max_queue_delay_us: int
    prefer_small_batches: bool  # also name min(8, max) as a preferred batch size
    spin_between_runs: bool  # the Python-backend runner's ONNX Runtime threads spin-wait after a run (its default)

    def dynamic_batching(self, max_batch_size: int, max_queue_delay_us: int) -> DynamicBatchingConfig:
        preferred = {min(8, max_batch_size), max_batch_size} if self.prefer_small_batches else set()
        return DynamicBatchingConfig(tuple(sorted(preferred)), max_queue_delay_us)


DEVICES = ("cpu", "gpu")
SERVING_PROFILES = {
    # A few cores: a batch of 8 already keeps them busy, so the batcher may send one as soon as it has it. No queue
    # delay: while the one instance computes a batch (10 ms and more), the next requests queue and form the next
    # batch anyway; a delay only held a lone request back (1 ms at one client, benchmarks/serve_stages.py).
    # ONNX Runtime's threads stop spinning when a run returns: spinning on between requests took the cores the
    # gateway decodes and answers on (benchmarks/serve_peer.py: 5 ms less CPU per image at one client on 2 cores).
    "cpu": ServingProfile("KIND_CPU", instances=1, max_batch_size=32, max_queue_delay_us=0,
                          prefer_small_batches=True, spin_between_runs=False),
    # A GPU is filled by large batches (ViT-B/16 at 224: batch 64, BENCHMARKS.md): no preferred sizes, so the
    # batcher sends the largest batch its queue holds (Triton's advice for backends that run any batch size);
    # a short queue delay bounds what a lone request waits; two instances per GPU, so that one instance's host
    # work (gathering requests, copies to and from the device) overlaps the other's kernels.
    "gpu": ServingProfile("KIND_GPU", instances=2, max_batch_size=64, max_queue_delay_us=500,
                          prefer_small_batches=False, spin_between_runs=True),
}


def device_of(config: pb.ModelConfig) -> str | None:
    """The device an existing config serves on: "gpu" with any KIND_GPU group, "cpu" with only others, None
    without instance groups."""
    kinds = {group.kind for group in config.instance_group}
    if not kinds:
        return None
    return "gpu" if pb.ModelInstanceGroup.KIND_GPU in kinds else "cpu"


@dataclass(frozen=True)
class TritonModelConfig:
    """Everything `config.pbtxt` says about one exported LoMaR model."""

    name: str
    flavour: str  # "python" (Python-backend runner), "onnxruntime" or "tensorrt" (native backends)
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    dynamic_batching: DynamicBatchingConfig = field(default_factory=DynamicBatchingConfig)
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    parameters: tuple[tuple[str, str], ...] = ()  # backend parameters (e.g. runner thread counts)
    warmup_batch_sizes: tuple[int, ...] = (1,)  # one zero-data warm-up request per size at load
    ort_tensorrt_precision: str = ""  # onnxruntime flavour: "FP16"/"FP32" enables the TensorRT accelerator

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ExportError(f"flavour must be one of {FLAVOURS}, got {self.flavour!r}")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ExportError(f"instance kind must be one of {INSTANCE_KINDS}, got {self.instance_kind!r}")
        if self.max_batch_size < 1 or self.instance_count < 1:
            raise ExportError("max_batch_size and the instance count must be >= 1")
        sizes = (*self.dynamic_batching.preferred_batch_sizes, *self.warmup_batch_sizes)
        if any(not 1 <= size <= self.max_batch_size for size in sizes):
            raise ExportError(f"preferred and warm-up batch sizes must be in 1..{self.max_batch_size}")
        if self.ort_tensorrt_precision and self.flavour != "onnxruntime":
            raise ExportError("the TensorRT accelerator setting applies to the onnxruntime flavour only")

    def to_proto(self) -> pb.ModelConfig:
        config = pb.ModelConfig(name=self.name, max_batch_size=self.max_batch_size,
                                default_model_filename=MODEL_FILES[self.flavour])
        if self.flavour == "tensorrt":
            config.platform = "tensorrt_plan"
        else:
            config.backend = self.flavour
        for tensor in self.inputs:
            config.input.add(name=tensor.name, data_type=pb.DataType.Value(tensor.data_type), dims=tensor.dims)
        for tensor in self.outputs:
            config.output.add(name=tensor.name, data_type=pb.DataType.Value(tensor.data_type), dims=tensor.dims,
                              label_filename=tensor.label_filename)
        config.dynamic_batching.preferred_batch_size.extend(self.dynamic_batching.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = self.dynamic_batching.max_queue_delay_us
        config.instance_group.add(kind=pb.ModelInstanceGroup.Kind.Value(self.instance_kind),
                                  count=self.instance_count)
        for key, value in self.parameters:
            config.parameters[key].string_value = value
        for size in self.warmup_batch_sizes:
            warmup = config.model_warmup.add(name=f"zeros_batch{size}", batch_size=size)
            for tensor in self.inputs:
                warmup.inputs[tensor.name].CopyFrom(pb.ModelWarmup.Input(
                    data_type=pb.DataType.Value(tensor.data_type), dims=tensor.dims, zero_data=True))
        if self.ort_tensorrt_precision:
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            accelerator.parameters["precision_mode"] = self.ort_tensorrt_precision
            accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
        return config

    def to_pbtxt(self) -> str:
        """The config as Triton's text format, checked by parsing it back with the schema."""
        proto = self.to_proto()
        text = text_format.MessageToString(proto)
        if parse_pbtxt(text) != proto:
            raise ExportError(f"config for {self.name!r} does not survive a round trip through the schema")
        return text


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse `config.pbtxt` text with Triton's schema (contracts.triton_config).

    Raises:
        ExportError: the text is not a valid ModelConfig.
    """
    try:
        return parse_config(text)
    except ConfigError as error:
        raise ExportError(str(error)) from error
