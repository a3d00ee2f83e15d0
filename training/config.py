"""Typed configs of the training programs: defaults < YAML file (`--config`) < command line.

Each dataclass field becomes a flag (`batch_size` -> `--batch-size`; booleans get `--x/--no-x`; `model_options`
takes repeated `--model-option KEY=VALUE`). A config validates itself at construction and is never mutated after;
the resolved config is saved as `config.yaml` in the output directory and inside every checkpoint.

Style (the project's one style for typed configs with help texts): frozen dataclasses whose fields carry their help
in field metadata, written with `setting(default, "help")`. Why: the configs are already typed, frozen, validated
in `__post_init__` and saved as plain dicts in checkpoints; metadata keeps each help text on its field's line with
no new dependency, and nothing reads source code at run time. pydantic would make training depend on the
gateway's extra and change how configs validate and serialise; tyro would add a dependency with its own flag
conventions. A subclass that only changes a default (`epochs: int = 400`) inherits the help of the field it
overrides. The serving processes' settings stay pydantic-settings: they read `LOMAR_*` environment variables.

`option_types` lists the scalar settings that are not paths: a retrain job request may set those
(lomar_serve/jobs/spec.py), apart from the few the job sets itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from training.errors import ConfigError

AMP_CHOICES = ("auto", "bf16", "fp16", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DECODE_CHOICES = ("cpu", "gpu")
CHOICES = {"amp": AMP_CHOICES, "device": DEVICE_CHOICES, "decode": DECODE_CHOICES}
MAX_DEFAULT_WORKERS = 8  # data-loading workers per process when the machine has the CPUs for them
MAX_LOG_EVERY = 20  # optimizer steps between metric records, unless --log-every says otherwise


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what a container or `taskset` grants), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """Data-loading workers per training process: the available CPUs shared by this node's processes (torchrun's
    LOCAL_WORLD_SIZE), at most MAX_DEFAULT_WORKERS. More workers than CPUs only slow loading down (and PyTorch
    warns about them)."""
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return min(MAX_DEFAULT_WORKERS, max(1, available_cpus() // processes))


def resolved_amp(amp: str, device_type: str) -> str:
    """The precision a run on `device_type` uses: autocast (bf16, fp16) is for CUDA; anything else computes in fp32
    ("none"). "auto" is bf16 on CUDA."""
    if device_type != "cuda":
        return "none"
    return "bf16" if amp == "auto" else amp


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
            path: bool = False) -> Any:
    """A config field with its help text; `path`: the value names a file or folder; `factory` for mutable defaults."""
    return field(default=default, default_factory=factory, metadata={"help": help, "path": path})


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by pretraining and fine-tuning."""

    data_dir: str = setting("", "image folder (pretraining: any layout; fine-tuning: class sub-folders, or train/ + "
                                "val/)", path=True)
    output_dir: str = setting("runs/train", "checkpoints, config.yaml, metrics.jsonl, TensorBoard events", path=True)
    model: str = setting("", "registered architecture name (training.models.list_models())")
    model_options: dict[str, Any] = setting(help="LoMaRConfig overrides, e.g. depth=2", factory=dict)
    image_size: int = setting(224, "training resolution (a multiple of the patch size)")
    epochs: int = setting(100, "epochs to train")
    steps_per_epoch: int = setting(0, "optimizer steps per epoch; 0 = one pass over the data")
    batch_size: int = setting(64, "per process (per GPU)")
    accum_iter: int = setting(1, "gradient accumulation: micro-batches per optimizer step")
    lr: float = setting(0.0, "absolute learning rate; 0 = blr * effective batch / 256")
    blr: float = setting(1e-3, "base learning rate")
    min_lr: float = setting(0.0, "floor of the cosine schedule")
    weight_decay: float = setting(0.05, "AdamW weight decay")
    warmup_epochs: float | None = setting(None, "linear learning-rate warm-up, in epochs; unset = "
                                                "warmup_fraction x epochs (a value given is used as it is)")
    warmup_fraction: float = setting(0.05, "the warm-up when --warmup-epochs is not given, as a fraction of --epochs "
                                           "(0.05: the paper's 5 of 100 fine-tuning and 20 of 400 pretraining "
                                           "epochs)")
    clip_grad: float = setting(0.0, "max gradient norm; 0 = no clipping")
    device: str = setting("auto", "auto | cpu | cuda")
    amp: str = setting("auto", "auto | bf16 | fp16 | none: autocast on CUDA (auto = bf16); fp32 on any other "
                               "device")
    compile: bool = setting(False, "torch.compile the model")
    tf32: bool = setting(True, "TF32 matmuls and cuDNN convolutions on CUDA (fp32 work outside autocast)")
    num_workers: int = setting(help="data-loading worker processes per training process (default: the CPUs "
                                    f"available to this node's processes, at most {MAX_DEFAULT_WORKERS})",
                               factory=default_num_workers)
    pin_memory: bool = setting(True, "page-locked host memory for batches (faster copies to the GPU)")
    seed: int = setting(0, "random seed (weights, data order, augmentations)")
    resume: str = setting("", "checkpoint to resume from; empty = OUTPUT_DIR/checkpoint-last.pth when it exists",
                          path=True)
    auto_resume: bool = setting(True, "resume from OUTPUT_DIR/checkpoint-last.pth when present")
    save_every_epochs: int = setting(20, "also keep checkpoint-EPOCH.pth every N epochs; 0 = never")
    save_every_steps: int = setting(0, "refresh checkpoint-last.pth every N optimizer steps inside an epoch; "
                                       "0 = never")
    log_every: int = setting(0, "optimizer steps between metric records; 0 = about 10 per epoch, at most every "
                                f"{MAX_LOG_EVERY} steps (enough points for a short run's curves)")
    progress: bool = setting(True, "progress bars (rank 0)")
    dist_backend: str = setting("", "DDP backend; empty = nccl on CUDA, gloo on CPU")
    data_roots: str = setting("", "folders every image must resolve into, symlinks followed (os.pathsep-separated; "
                                  "retrain jobs pass theirs); empty = symlinks followed anywhere", path=True)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "accum_iter", "image_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ("steps_per_epoch", "lr", "blr", "min_lr", "weight_decay", "warmup_epochs", "warmup_fraction",
                        "clip_grad", "num_workers", "save_every_epochs", "save_every_steps", "log_every")
        for name in non_negative:
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{spec.name} must be a finite number, got {value}")
        if self.device not in DEVICE_CHOICES:
            raise ConfigError(f"device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.warmup_fraction > 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        if not self.data_dir:
            raise ConfigError("data_dir is required (--data-dir)")
        if not isinstance(self.model_options, dict):
            raise ConfigError("model_options must be a mapping of LoMaRConfig fields to values")

    @property
    def warmup(self) -> float:
        """The warm-up in epochs: --warmup-epochs when given, else warmup_fraction of the run."""
        return self.warmup_epochs if self.warmup_epochs is not None else self.warmup_fraction * self.epochs

    def logging_interval(self, steps_per_epoch: int) -> int:
        """Optimizer steps between metric records: --log-every, else about 10 records an epoch, at most every
        MAX_LOG_EVERY steps."""
        return self.log_every or max(1, min(MAX_LOG_EVERY, steps_per_epoch // 10))

    def for_device(self, device_type: str) -> TrainConfig:
        """This config as it runs on `device_type` (the one saved and logged): the precision resolved."""
        return dataclasses.replace(self, amp=resolved_amp(self.amp, device_type))

    def effective_lr(self, world_size: int) -> float:
        """lr, or blr x effective batch / 256 (effective batch = batch x accumulation x processes)."""
        return self.lr or self.blr * self.batch_size * self.accum_iter * world_size / 256

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """LoMaR pretraining (recipe of the paper: AdamW (0.9, 0.95), blr 1.5e-4, wd 0.05, norm-pix loss)."""

    output_dir: str = "runs/pretrain"
    model: str = "lomar_base_patch16"
    epochs: int = 400
    blr: float = 1.5e-4
    min_crop_scale: float = setting(0.2, "RandomResizedCrop scale range (min_crop_scale, 1)")
    window_size: int = setting(7, "K: windows are K x K patches")
    num_windows: int = setting(4, "M windows per image")
    mask_ratio: float = setting(0.8, "floor(K*K*r) patches hidden per window")
    norm_pix_loss: bool = setting(True, "reconstruct per-patch normalised pixels")
    decode: str = setting("cpu", "cpu | gpu: decode JPEGs (nvJPEG) and crop/flip on the GPU; cpu without CUDA")

    def architecture_overrides(self) -> dict[str, Any]:
        """LoMaRConfig fields this run sets on its registered architecture (the objective's, then --model-option)."""
        return {"window_size": self.window_size, "num_windows": self.num_windows, "mask_ratio": self.mask_ratio,
                "norm_pix_loss": self.norm_pix_loss, "img_size": self.image_size, **self.model_options}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decode not in DECODE_CHOICES:
            raise ConfigError(f"decode must be one of {DECODE_CHOICES}, got {self.decode!r}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ConfigError(f"min_crop_scale must be in (0, 1], got {self.min_crop_scale}")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """LoMaR fine-tuning (recipe of the paper: layer decay 0.65, drop path 0.1, mixup/cutmix, RandAugment)."""

    output_dir: str = "runs/finetune"
    model: str = setting("", "registered architecture name; empty = the architecture of the --init checkpoint")
    init: str = setting("", "pretrained (ours or official) checkpoint to start from; empty = random init", path=True)
    reset_head: bool = setting(False, "start the classification head afresh even when --init is a fine-tuned "
                                      "checkpoint of the same classes (by default such a model continues, head "
                                      "included)")
    val_dir: str = setting("", "labelled validation folder; empty = DATA_DIR/val, or DATA_DIR itself", path=True)
    blr: float = 5e-4
    min_lr: float = 1e-6
    layer_decay: float = setting(0.65, "layer-wise learning-rate decay")
    drop_path: float = setting(0.1, "stochastic depth rate")
    global_pool: bool = setting(True, "classify the mean of the patch tokens (else the class token)")
    mixup: float = setting(0.8, "mixup alpha; 0 = off")
    cutmix: float = setting(1.0, "cutmix alpha; 0 = off")
    mixup_prob: float = setting(1.0, "probability of mixup or cutmix per batch")
    mixup_switch_prob: float = setting(0.5, "probability of cutmix rather than mixup when both are on")
    smoothing: float = setting(0.1, "label smoothing")
    auto_augment: str = setting("rand-m9-mstd0.5-inc1", "timm auto-augment spec; empty = none")
    reprob: float = setting(0.25, "random erasing probability")
    model_ema: bool = setting(False, "keep an exponential moving average of the weights (evaluated too)")
    model_ema_decay: float = setting(0.9999, "EMA decay per optimizer step")

    def architecture_overrides(self, num_classes: int) -> dict[str, Any]:
        """LoMaRConfig fields this run sets on its architecture (the classifier's, then --model-option)."""
        return {"img_size": self.image_size, "num_classes": num_classes, "global_pool": self.global_pool,
                "drop_path_rate": self.drop_path, **self.model_options}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        for name in ("drop_path", "smoothing", "reprob", "mixup_prob", "mixup_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.model and not self.init:
            raise ConfigError("give --model, --init, or both")
        if not 0.0 < self.model_ema_decay < 1.0:
            raise ConfigError(f"model_ema_decay must be in (0, 1), got {self.model_ema_decay}")


C = TypeVar("C", bound=TrainConfig)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def field_metadata(cls: type, name: str) -> Mapping[str, Any]:
    """The `setting` metadata of field `name`: its own, else that of the field it overrides in a base class (a
    subclass that only changes a default keeps the help and the path flag)."""
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass):
            spec = {f.name: f for f in dataclasses.fields(klass)}.get(name)
            if spec is not None and spec.metadata:
                return spec.metadata
    return {}


def field_help(cls: type, name: str) -> str:
    return str(field_metadata(cls, name).get("help", ""))


def base_type(hint: Any) -> Any:
    """A field's type without `| None` and type arguments: `float | None` -> float, `dict[str, Any]` -> dict."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def field_types(cls: type) -> dict[str, Any]:
    """Name -> base type of every field (`base_type`)."""
    return {name: base_type(hint) for name, hint in typing.get_type_hints(cls).items()}


def option_types(cls: type[TrainConfig]) -> dict[str, type]:
    """Name -> type of the config's scalar (bool, int, float, str) settings that are not paths (an optional one,
    unset by default, by the type of the value it takes)."""
    kinds = field_types(cls)
    return {spec.name: kinds[spec.name] for spec in dataclasses.fields(cls)
            if kinds[spec.name] in (bool, int, float, str) and not field_metadata(cls, spec.name).get("path")}


def build_parser(cls: type[TrainConfig], prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per field; absent flags stay absent so YAML values are not overwritten."""
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML file of settings (field names as keys); flags override it")
    kinds = field_types(cls)
    for spec in dataclasses.fields(cls):
        kind = kinds[spec.name]
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        text = f"{field_help(cls, spec.name)} (default {default!r})".strip()
        if spec.name == "model_options":
            parser.add_argument("--model-option", dest="model_options", action="append", type=_parse_option,
                                metavar="KEY=VALUE", help=f"{field_help(cls, spec.name)}; repeatable")
        elif kind is bool:
            parser.add_argument(_flag(spec.name), action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(_flag(spec.name), type=kind, metavar=spec.name.upper(), help=text,
                                choices=CHOICES.get(spec.name))
    return parser


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def coerce(name: str, kind: Any, value: Any, nullable: bool = False) -> Any:
    """A YAML value as the field's type (YAML reads `1e-3` as a string and `5` as an int); else a ConfigError.
    `nullable`: the field may be unset (None, YAML's `null`)."""
    if value is None and nullable:
        return None
    if kind is bool and isinstance(value, bool) or kind is dict or kind is str and isinstance(value, str):
        return value
    try:
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"setting {name} must be of type {getattr(kind, '__name__', kind)}, got {value!r}")


def make_config(cls: type[C], values: dict[str, Any]) -> C:
    """Build and validate a config from a mapping of field values; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    kinds = field_types(cls)
    nullable = {name for name, hint in hints.items() if type(None) in typing.get_args(hint)}
    return cls(**{name: coerce(name, kinds[name], value, name in nullable) for name, value in values.items()})


def parse_config(cls: type[C], argv: list[str], prog: str, description: str) -> C:
    """defaults < YAML (`--config`) < command-line flags."""
    args = vars(build_parser(cls, prog, description).parse_args(argv))
    values = load_yaml(args.pop("config")) if "config" in args else {}
    options = dict(values.get("model_options") or {})
    options.update(dict(args.pop("model_options", [])))
    values.update(args)
    if options:
        values["model_options"] = options
    return make_config(cls, values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
