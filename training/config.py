"""Typed configs of the training programs: defaults < YAML file (`--config`) < command line.

Each dataclass field becomes a flag (`batch_size` -> `--batch-size`; booleans get `--x/--no-x`; `model_options`
takes repeated `--model-option KEY=VALUE`). A config validates itself at construction and is never mutated after;
the resolved config is saved as `config.yaml` in the output directory and inside every checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from training.errors import ConfigError

AMP_CHOICES = ("bf16", "fp16", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
CHOICES = {"amp": AMP_CHOICES, "device": DEVICE_CHOICES}


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by pretraining and fine-tuning."""

    data_dir: str = ""  # image folder (pretraining: any layout; fine-tuning: class sub-folders, or train/ + val/)
    output_dir: str = "runs/train"  # checkpoints, config.yaml, metrics.jsonl, TensorBoard events
    model: str = ""  # registered architecture name (training.models.list_models())
    model_options: dict[str, Any] = field(default_factory=dict)  # LoMaRConfig overrides, e.g. depth=2
    image_size: int = 224  # training resolution (a multiple of the patch size)
    epochs: int = 100
    steps_per_epoch: int = 0  # optimizer steps per epoch; 0 = one pass over the data
    batch_size: int = 64  # per process (per GPU)
    accum_iter: int = 1  # gradient accumulation: micro-batches per optimizer step
    lr: float = 0.0  # absolute learning rate; 0 = blr * effective batch / 256
    blr: float = 1e-3  # base learning rate
    min_lr: float = 0.0  # floor of the cosine schedule
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    clip_grad: float = 0.0  # max gradient norm; 0 = no clipping
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "bf16"  # bf16 | fp16 | none; autocast is used on CUDA only
    compile: bool = False  # torch.compile the model
    num_workers: int = 8  # data-loading worker processes per training process
    pin_memory: bool = True
    seed: int = 0
    resume: str = ""  # checkpoint to resume from; empty = OUTPUT_DIR/checkpoint-last.pth when it exists
    auto_resume: bool = True  # resume from OUTPUT_DIR/checkpoint-last.pth when present
    save_every_epochs: int = 20  # also keep checkpoint-EPOCH.pth every N epochs; 0 = never
    save_every_steps: int = 0  # refresh checkpoint-last.pth every N optimizer steps inside an epoch; 0 = never
    log_every: int = 20  # optimizer steps between metric records
    progress: bool = True  # progress bars (rank 0)
    dist_backend: str = ""  # DDP backend; empty = nccl on CUDA, gloo on CPU

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
    min_crop_scale: float = 0.2  # RandomResizedCrop scale range (min_crop_scale, 1)
    window_size: int = 7  # K: windows are K x K patches
    num_windows: int = 4  # M windows per image
    mask_ratio: float = 0.8  # floor(K*K*r) patches hidden per window
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ConfigError(f"min_crop_scale must be in (0, 1], got {self.min_crop_scale}")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """LoMaR fine-tuning (recipe of the paper: layer decay 0.65, drop path 0.1, mixup/cutmix, RandAugment)."""

    output_dir: str = "runs/finetune"
    model: str = ""  # empty = the architecture of the --init checkpoint
    init: str = ""  # pretrained (ours or official) checkpoint to start from; empty = random init
    val_dir: str = ""  # labelled validation folder; empty = DATA_DIR/val, or DATA_DIR itself
    blr: float = 5e-4
    min_lr: float = 1e-6
    layer_decay: float = 0.65
    drop_path: float = 0.1
    global_pool: bool = True
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    auto_augment: str = "rand-m9-mstd0.5-inc1"  # timm auto-augment spec; empty = none
    reprob: float = 0.25  # random erasing probability
    model_ema: bool = False
    model_ema_decay: float = 0.9999

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


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field in the class bodies (subclass first): the flags' help texts."""
    comments: dict[str, str] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            match = re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line)
            if match:
                comments.setdefault(match.group(1), match.group(2))
    return comments


def build_parser(cls: type[TrainConfig], prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per field; absent flags stay absent so YAML values are not overwritten."""
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML file of settings (field names as keys); flags override it")
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    for spec in dataclasses.fields(cls):
        kind = hints[spec.name]
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        text = f"{comments.get(spec.name, '')} (default {default!r})".strip()
        if spec.name == "model_options":
            parser.add_argument("--model-option", dest="model_options", action="append", type=_parse_option,
                                metavar="KEY=VALUE", help=f"{comments[spec.name]}; repeatable")
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
