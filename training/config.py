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
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from training.errors import ConfigError

AMP_CHOICES = ("bf16", "fp16", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DECODE_CHOICES = ("cpu", "gpu")
CHOICES = {"amp": AMP_CHOICES, "device": DEVICE_CHOICES, "decode": DECODE_CHOICES}


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
    warmup_epochs: float = setting(5.0, "linear learning-rate warm-up, in epochs")
    clip_grad: float = setting(0.0, "max gradient norm; 0 = no clipping")
    device: str = setting("auto", "auto | cpu | cuda")
    amp: str = setting("bf16", "bf16 | fp16 | none; autocast is used on CUDA only")
    compile: bool = setting(False, "torch.compile the model")
    tf32: bool = setting(True, "TF32 matmuls and cuDNN convolutions on CUDA (fp32 work outside autocast)")
    num_workers: int = setting(8, "data-loading worker processes per training process")
    pin_memory: bool = setting(True, "page-locked host memory for batches (faster copies to the GPU)")
    seed: int = setting(0, "random seed (weights, data order, augmentations)")
    resume: str = setting("", "checkpoint to resume from; empty = OUTPUT_DIR/checkpoint-last.pth when it exists",
                          path=True)
    auto_resume: bool = setting(True, "resume from OUTPUT_DIR/checkpoint-last.pth when present")
    save_every_epochs: int = setting(20, "also keep checkpoint-EPOCH.pth every N epochs; 0 = never")
    save_every_steps: int = setting(0, "refresh checkpoint-last.pth every N optimizer steps inside an epoch; "
                                       "0 = never")
    log_every: int = setting(20, "optimizer steps between metric records")
    progress: bool = setting(True, "progress bars (rank 0)")
    dist_backend: str = setting("", "DDP backend; empty = nccl on CUDA, gloo on CPU")
    data_roots: str = setting("", "folders every image must resolve into, symlinks followed (os.pathsep-separated; "
                                  "retrain jobs pass theirs); empty = symlinks followed anywhere", path=True)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "accum_iter", "image_size", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ("steps_per_epoch", "lr", "blr", "min_lr", "weight_decay", "warmup_epochs", "clip_grad",
                        "num_workers", "save_every_epochs", "save_every_steps")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{spec.name} must be a finite number, got {value}")
        if self.device not in DEVICE_CHOICES:
            raise ConfigError(f"device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if not self.data_dir:
            raise ConfigError("data_dir is required (--data-dir)")
        if not isinstance(self.model_options, dict):
            raise ConfigError("model_options must be a mapping of LoMaRConfig fields to values")

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
    warmup_epochs: float = 20.0
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


def option_types(cls: type[TrainConfig]) -> dict[str, type]:
    """Name -> type of the config's scalar (bool, int, float, str) settings that are not paths."""
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)
            if hints[spec.name] in (bool, int, float, str) and not field_metadata(cls, spec.name).get("path")}


def build_parser(cls: type[TrainConfig], prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per field; absent flags stay absent so YAML values are not overwritten."""
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML file of settings (field names as keys); flags override it")
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        kind = hints[spec.name]
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


def coerce(name: str, kind: Any, value: Any) -> Any:
    """A YAML value as the field's type (YAML reads `1e-3` as a string and `5` as an int); else a ConfigError."""
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
    kinds = {name: typing.get_origin(kind) or kind for name, kind in hints.items()}
    return cls(**{name: coerce(name, kinds[name], value) for name, value in values.items()})


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
