"""One export: checkpoint -> contract wrapper -> ONNX (and TensorRT) -> verified -> new version in a repository.

Everything is built and verified in a temporary directory; the repository is touched only by the final
`publish`, so an export that fails anywhere (verification included) leaves it as it was.
"""
from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

from contracts.checkpoints import file_sha256
from contracts.model_card import ModelCard
from contracts.model_repository import (
    CARD_FILE, CONFIG_FILE, DEFAULT_MODEL_NAMES, LABELS_FILE, MODEL_NAME_RULE, ONNX_FILE, PYTHON_FILE, TASKS,
    TENSORRT_FILE, is_model_name)
from export.errors import ExportError, UnsupportedCombinationError
from export.model_card import SOFTWARE, package_versions, tensor_specs, utc_now
from export.onnx_export import EXAMPLE_BATCH, OPSET, export_onnx
from export.ort_fused import GRAPH as ORT_FUSED
from export.ort_fused import export_ort_fused
from export.precision import convert_to_fp16
from export.repository import PublishedVersion, publish
from export.tensorrt import build_engine, engine_runner, require_tensorrt
from export.triton_config import (DEVICES, FLAVOURS, SERVING_PROFILES, TensorConfig, TritonModelConfig, device_of,
                                  parse_pbtxt)
from export.verify import FP32_TOLERANCE, Arrays, InputSpace, torch_runner, verify
from export.wrappers import ClassifierExport, ReconstructionExport
from training.models import load_classifier, load_pretrained, read_checkpoint
from training.models.config import LoMaRConfig

LOGGER = logging.getLogger(__name__)
FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16")
# the ONNX graph: standard operators (every runtime, TensorRT), or ONNX Runtime's fused attention (export/ort_fused.py)
GRAPHS = ("standard", ORT_FUSED)
RUNNER_MODULE = "lomar_serve.triton.onnx_runner"  # copied into python-flavour versions as PYTHON_FILE


@dataclass(frozen=True)
class ExportOptions:
    """What `lomar export` was asked to do; None fields take the defaults described on each."""

    checkpoint: Path
    task: str  # "classify" (fine-tuned checkpoint) or "reconstruct" (pretrained checkpoint)
    out: Path  # model repository root
    name: str | None = None  # None: lomar_classifier / lomar_reconstruction
    image_size: int | None = None  # None: the checkpoint's img_size
    format: str = "onnx"
    precision: str | None = None  # None: fp32 for onnx, fp16 for tensorrt
    labels_file: Path | None = None  # classify: one label per line; None: checkpoint's class_names or class_<i>
    backend: str | None = None  # None: python for onnx, tensorrt for tensorrt
    # Where Triton runs it, "cpu" or "gpu". None: the model's, when REPO/NAME/config.pbtxt exists (a new version,
    # e.g. a retrain job's, keeps its model on its device), else cpu for the python backend and gpu for the others.
    device: str | None = None
    # None: the device's serving profile (export/triton_config.py SERVING_PROFILES). Both filled in at construction.
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    instances: int | None = None
    intra_op_threads: int = 0  # python flavour: ONNX Runtime threads per instance, 0 = its default
    ort_tensorrt: bool = False  # onnxruntime flavour: enable ONNX Runtime's TensorRT accelerator in Triton
    tolerance: float = FP32_TOLERANCE
    graph: str = "standard"  # one of GRAPHS

    def __post_init__(self) -> None:
        for field_name, value, allowed in (("task", self.task, TASKS), ("format", self.format, FORMATS),
                                           ("precision", self.precision, (None, *PRECISIONS)),
                                           ("backend", self.backend, (None, *FLAVOURS)),
                                           ("device", self.device, (None, *DEVICES)),
                                           ("graph", self.graph, GRAPHS)):
            if value not in allowed:
                raise ExportError(f"--{field_name} must be one of {[a for a in allowed if a]}, got {value!r}")
        if self.format == "tensorrt" and self.backend_name != "tensorrt":
            raise UnsupportedCombinationError(
                f"--format tensorrt makes a TensorRT engine, which only Triton's tensorrt backend runs; "
                f"--backend {self.backend} cannot serve it (drop --backend, or use --format onnx)")
        if self.format == "onnx" and self.backend_name == "tensorrt":
            raise UnsupportedCombinationError("--backend tensorrt needs --format tensorrt (an engine, not ONNX); "
                                              "or keep ONNX with --backend onnxruntime --ort-tensorrt")
        if self.ort_tensorrt and self.backend_name != "onnxruntime":
            raise UnsupportedCombinationError("--ort-tensorrt configures Triton's onnxruntime backend: it needs "
                                              "--backend onnxruntime")
        if self.graph == ORT_FUSED and (self.format != "onnx" or self.ort_tensorrt):
            raise UnsupportedCombinationError(
                f"--graph {ORT_FUSED} holds ONNX Runtime contrib operators, which TensorRT cannot build: it needs "
                f"--format onnx without --ort-tensorrt (use the standard graph for TensorRT)")
        if self.labels_file is not None and self.task != "classify":
            raise UnsupportedCombinationError("--labels applies to --task classify only")
        if not is_model_name(self.model_name):
            raise ExportError(f"--name {self.model_name!r} is not a valid model name: {MODEL_NAME_RULE}")
        if self.device is None:
            object.__setattr__(self, "device", self._existing_device() or
                               ("cpu" if self.backend_name == "python" else "gpu"))
        profile = SERVING_PROFILES[self.device_name]
        for setting in ("max_batch_size", "max_queue_delay_us", "instances"):
            if getattr(self, setting) is None:
                object.__setattr__(self, setting, getattr(profile, setting))
        if self.backend_name == "tensorrt" and self.device_name != "gpu":
            raise UnsupportedCombinationError("a TensorRT engine runs on a GPU only: drop --device cpu")
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ExportError("--max-batch-size and --instances must be >= 1, the queue delay >= 0")
        if self.image_size is not None and self.image_size < 1:
            raise ExportError("--image-size must be positive")
        if self.tolerance < 0:
            raise ExportError("the verification tolerance must be >= 0")

    @property
    def model_name(self) -> str:
        return DEFAULT_MODEL_NAMES[self.task] if self.name is None else self.name

    @property
    def backend_name(self) -> str:
        return self.backend or ("tensorrt" if self.format == "tensorrt" else "python")

    @property
    def device_name(self) -> str:
        assert self.device is not None  # filled in by __post_init__
        return self.device

    def _existing_device(self) -> str | None:
        """The device of the model this export adds a version to; None for a new model (or a config that cannot
        be read, which publishing refuses later with the reason)."""
        try:
            return device_of(parse_pbtxt((self.out / self.model_name / CONFIG_FILE).read_text()))
        except (OSError, ExportError):
            return None

    @property
    def precision_name(self) -> str:
        return self.precision or ("fp16" if self.format == "tensorrt" else "fp32")


@dataclass(frozen=True)
class ExportPlan:
    """The model wrapped to the I/O contract, with the shapes of everything it takes and gives."""

    module: nn.Module
    config: LoMaRConfig
    space: InputSpace
    token_grid: tuple[int, int]  # the patch grid of each attention sequence: the image's, or a window's
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    classes: tuple[str, ...]


def read_labels(options: ExportOptions, num_classes: int) -> tuple[str, ...]:
    """--labels FILE, else the checkpoint's 'class_names', else class_0..class_{C-1}; must match the head."""
    if options.labels_file is not None:
        if not options.labels_file.is_file():
            raise ExportError(f"labels file {options.labels_file} does not exist")
        labels = [line.strip() for line in options.labels_file.read_text().splitlines() if line.strip()]
        source = str(options.labels_file)
    else:
        stored = read_checkpoint(options.checkpoint).get("class_names")
        if stored is None:
            return tuple(f"class_{i}" for i in range(num_classes))
        if not isinstance(stored, (list, tuple)) or not all(isinstance(label, str) for label in stored):
            raise ExportError(f"checkpoint {options.checkpoint}: 'class_names' is not a list of strings")
        labels, source = [label.strip() for label in stored], "the checkpoint's class_names"
    if len(labels) != num_classes:
        raise ExportError(f"{source} has {len(labels)} labels but the model has {num_classes} classes")
    if any(not label or "\n" in label for label in labels):
        raise ExportError(f"{source} has an empty label")
    return tuple(labels)


def plan_export(options: ExportOptions) -> ExportPlan:
    """Load the checkpoint for the task and wrap it; checks the image size against the architecture."""
    if options.task == "classify":
        model: nn.Module = load_classifier(options.checkpoint)
    else:
        model = load_pretrained(options.checkpoint)
    config = model.config
    size = options.image_size or config.img_size
    if size % config.patch_size:
        raise ExportError(f"--image-size {size} is not a multiple of the patch size {config.patch_size}")
    grid = size // config.patch_size
    image = TensorConfig("image", "TYPE_UINT8", (3, size, size))
    if options.task == "classify":
        if config.num_classes < 1:
            raise ExportError(f"checkpoint {options.checkpoint} has no classification head")
        outputs = (TensorConfig("logits", "TYPE_FP32", (config.num_classes,), label_filename=LABELS_FILE),
                   TensorConfig("embedding", "TYPE_FP32", (config.embed_dim,)))
        return ExportPlan(ClassifierExport(model), config, InputSpace((size, size)), (grid, grid), (image,),
                          outputs, read_labels(options, config.num_classes))
    if grid < config.window_size:
        raise ExportError(f"reconstruction needs a patch grid of at least {config.window_size}x{config.window_size}"
                          f": --image-size must be >= {config.window_size * config.patch_size}")
    inputs = (image, TensorConfig("mask", "TYPE_BOOL", (grid, grid)))
    outputs = (TensorConfig("patches", "TYPE_FP32", (grid * grid, config.patch_size ** 2 * 3)),
               TensorConfig("reconstruction", "TYPE_FP32", (3, size, size)))
    return ExportPlan(ReconstructionExport(model, (size, size)), config, InputSpace((size, size), (grid, grid)),
                      (config.window_size, config.window_size), inputs, outputs, ())


def onnx_runtime_runner(path: Path, output_names: list[str]) -> Callable[[Arrays], Arrays]:
    """Run an ONNX file with ONNX Runtime (CUDA when available, else CPU) on numpy inputs."""
    wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), providers=wanted)

    def run(inputs: Arrays) -> Arrays:
        return dict(zip(output_names, session.run(output_names, inputs)))

    return run


def verified_onnx(fp32_onnx: Path, precision: str, reference: Callable[[Arrays], Arrays], space: InputSpace,
                  output_names: list[str], tolerance: float) -> tuple[Path, dict]:
    """The ONNX file of `precision` and its parity figures for the model card (VerificationError if it fails).

    fp16: the graph converted from `fp32_onnx` (export/precision.py), verified after the fp32 graph on the same
    inputs, so an export fault is never taken for rounding; the card keeps both ("onnxruntime" is the shipped graph,
    "onnxruntime_fp32" the one it was converted from)."""
    fp32 = verify(reference, onnx_runtime_runner(fp32_onnx, output_names), space, "fp32", tolerance)
    if precision == "fp32":
        return fp32_onnx, {"onnxruntime": fp32}
    fp16_onnx = fp32_onnx.with_name("model.fp16.onnx")
    conversion = convert_to_fp16(fp32_onnx, fp16_onnx)
    fp16 = verify(reference, onnx_runtime_runner(fp16_onnx, output_names), space, precision, tolerance)
    return fp16_onnx, {"onnxruntime": {**fp16, "conversion": conversion}, "onnxruntime_fp32": fp32}


def triton_config(options: ExportOptions, plan: ExportPlan) -> TritonModelConfig:
    backend = options.backend_name
    profile = SERVING_PROFILES[options.device_name]
    parameters: tuple[tuple[str, str], ...] = ()
    if backend == "python":
        # "auto": the runner follows the instance kind, and a KIND_GPU instance not on CUDA refuses to load
        parameters = (("execution_provider", "auto"), ("intra_op_threads", str(options.intra_op_threads)),
                      ("inter_op_threads", "0"),
                      ("force_spinning_stop", "0" if profile.spin_between_runs else "1"))
    return TritonModelConfig(
        name=options.model_name, flavour=backend, max_batch_size=options.max_batch_size,
        inputs=plan.inputs, outputs=plan.outputs,
        dynamic_batching=profile.dynamic_batching(options.max_batch_size, options.max_queue_delay_us),
        instance_kind=profile.instance_kind, instance_count=options.instances,
        parameters=parameters,
        ort_tensorrt_precision=options.precision_name.upper() if options.ort_tensorrt else "")


def runner_source() -> Path:
    spec = importlib.util.find_spec(RUNNER_MODULE)
    if spec is None or spec.origin is None:
        raise ExportError(f"cannot find the Python-backend runner {RUNNER_MODULE}")
    return Path(spec.origin)


def export_checkpoint(options: ExportOptions) -> PublishedVersion:
    """Run the whole export; returns where the new version landed.

    Raises:
        ExportError (VerificationError, UnsupportedCombinationError, TensorRTUnavailableError): nothing written.
        training.errors.CheckpointError: the checkpoint cannot be read or does not fit the task.
    """
    if options.format == "tensorrt":
        require_tensorrt()  # fail before the slow part
    plan = plan_export(options)
    input_names = [t.name for t in plan.inputs]
    output_names = [t.name for t in plan.outputs]
    reference = torch_runner(plan.module, output_names)
    precision = options.precision_name
    with tempfile.TemporaryDirectory(prefix="lomar-export-") as temp:
        work = Path(temp)
        example = tuple(torch.from_numpy(a) for a in plan.space.sample(EXAMPLE_BATCH).values())
        fp32_onnx = work / "model.fp32.onnx"
        if options.graph == ORT_FUSED:
            export_ort_fused(plan.module, plan.token_grid, example, input_names, output_names, fp32_onnx)
        else:
            export_onnx(plan.module, example, input_names, output_names, fp32_onnx)
        files = {ONNX_FILE: fp32_onnx}
        if options.format == "onnx":
            files[ONNX_FILE], parity = verified_onnx(fp32_onnx, precision, reference, plan.space, output_names,
                                                     options.tolerance)
        else:
            files[TENSORRT_FILE] = work / TENSORRT_FILE
            build_engine(fp32_onnx, files[TENSORRT_FILE], {t.name: t.dims for t in plan.inputs},
                         options.max_batch_size, precision)
            parity = {"tensorrt": verify(reference, engine_runner(files[TENSORRT_FILE], output_names), plan.space,
                                         precision, options.tolerance)}
        if options.backend_name == "python":
            files[PYTHON_FILE] = runner_source()
        card = ModelCard(
            name=options.model_name, task=options.task, format=options.format, precision=precision,
            backend=options.backend_name, graph=options.graph, source_checkpoint=options.checkpoint.name,
            source_sha256=file_sha256(options.checkpoint), architecture=plan.config.to_dict(),
            image_size=plan.space.image_size, classes=plan.classes, opset=OPSET,
            inputs=tensor_specs(plan.inputs), outputs=tensor_specs(plan.outputs), parity=parity,
            exported_at=utc_now(), software=package_versions(*SOFTWARE))
        files[CARD_FILE] = card.write(work)
        labels = list(plan.classes) if options.task == "classify" else None
        return publish(options.out, triton_config(options, plan), files, labels)
