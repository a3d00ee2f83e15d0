"""What a retrain job is asked to do: the request (validated at the HTTP edge) and the resolved plan it runs.

A request names data and a starting point; `JobRequest.plan()` confines every path to the data roots (or, for
checkpoints, to earlier jobs' folders), checks names, and keeps only whitelisted training settings, each
passed to the training program as one `--flag=value` argument (never through a shell).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import datasets
from lomar_serve.lifecycle.errors import InvalidName, LifecycleError, PathNotAllowed
from lomar_serve.lifecycle.paths import DataRoots, check_model_name

ARCHITECTURE = re.compile(r"^[a-z0-9_]{1,64}$")
OPTION_KEY = re.compile(r"^[a-z_]{1,32}$")
# Training settings a request may set (TrainConfig / FinetuneConfig / PretrainConfig fields) and their types.
TRAINING_OPTIONS: dict[str, type] = {
    "batch_size": int, "image_size": int, "steps_per_epoch": int, "accum_iter": int, "lr": float, "blr": float,
    "min_lr": float, "weight_decay": float, "warmup_epochs": float, "clip_grad": float, "seed": int,
    "num_workers": int, "save_every_steps": int, "save_every_epochs": int, "log_every": int, "device": str, "amp": str,
    "layer_decay": float, "drop_path": float, "mixup": float, "cutmix": float, "smoothing": float,
    "auto_augment": str, "reprob": float, "mask_ratio": float, "num_windows": int,
    "min_crop_scale": float,
}
DEFAULT_MODEL_NAMES = {"finetune": "lomar_classifier", "pretrain": "lomar_reconstruction"}
Scalar = bool | int | float | str


class JobRequest(BaseModel):
    """POST /v1/admin/jobs body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["finetune", "pretrain"] = "finetune"
    data_dir: str = Field(description="labelled image folder (CLASS/*.png, or train/ and val/), inside a data root")
    val_dir: str | None = Field(None, description="validation folder inside a data root (default: DATA_DIR/val)")
    init: str | None = Field(None, description="checkpoint to start from, inside a data root")
    from_job: str | None = Field(None, pattern=r"^[a-f0-9]{1,32}$",
                                 description="start from the checkpoint of this earlier job")
    model: str | None = Field(None, description="architecture name, e.g. lomar_tiny_patch16")
    model_options: dict[str, Scalar] = Field(default_factory=dict, description="architecture overrides, e.g. depth")
    model_name: str | None = Field(None, description="Triton model to add the version to "
                                                     "(default lomar_classifier / lomar_reconstruction)")
    epochs: int = Field(10, ge=1, le=100_000)
    options: dict[str, Scalar] = Field(default_factory=dict,
                                       description=f"training settings: {', '.join(sorted(TRAINING_OPTIONS))}")
    auto_deploy: bool = Field(False, description="deploy the new version when its evaluation is not worse "
                                                 "than the serving version's")

    def plan(self, roots: DataRoots, jobs_dir: Path) -> JobPlan:
        """Resolve and check everything; raises PathNotAllowed / InvalidName / LifecycleError."""
        data_dir = roots.resolve(self.data_dir, kind="data_dir", must_be_dir=True)
        val_dir = roots.resolve(self.val_dir, kind="val_dir", must_be_dir=True) if self.val_dir else None
        init = roots.resolve(self.init, kind="init", must_be_dir=False) if self.init else None
        if self.from_job:
            if init is not None:
                raise LifecycleError("give init or from_job, not both")
            init = job_checkpoint(jobs_dir, self.from_job, self.kind)
        if self.model is not None and not ARCHITECTURE.fullmatch(self.model):
            raise InvalidName(f"invalid architecture name {self.model!r}")
        if self.kind == "finetune" and init is None and self.model is None:
            raise LifecycleError("a finetune job needs a starting point: init, from_job or model")
        for key in self.model_options:
            if not OPTION_KEY.fullmatch(key):
                raise InvalidName(f"invalid model option {key!r}")
        options = {key: check_option(key, value) for key, value in self.options.items()}
        return JobPlan(kind=self.kind, data_dir=str(data_dir), val_dir=str(val_dir) if val_dir else None,
                       init=str(init) if init else None, model=self.model, model_options=dict(self.model_options),
                       model_name=check_model_name(self.model_name or DEFAULT_MODEL_NAMES[self.kind]),
                       epochs=self.epochs, options=options, auto_deploy=self.auto_deploy)


def check_option(key: str, value: Scalar) -> Scalar:
    """A whitelisted training setting of the right type; strings are short and cannot look like flags."""
    kind = TRAINING_OPTIONS.get(key)
    if kind is None:
        raise LifecycleError(f"unknown or disallowed training option {key!r}; "
                             f"allowed: {', '.join(sorted(TRAINING_OPTIONS))}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LifecycleError(f"training option {key!r} must be a {kind.__name__}")
    if kind is str:
        if not isinstance(value, str) or len(value) > 64 or value.startswith("-") or "\n" in value:
            raise LifecycleError(f"training option {key!r} must be a short string")
        return value
    if isinstance(value, str) or (kind is int and not isinstance(value, int)):
        raise LifecycleError(f"training option {key!r} must be a {kind.__name__}")
    return kind(value)


def job_checkpoint(jobs_dir: Path, job_id: str, kind: str) -> Path:
    """The checkpoint an earlier job left (best for fine-tuning, else last)."""
    train_dir = (jobs_dir / job_id / "train").resolve()
    if not train_dir.is_relative_to(jobs_dir.resolve()):
        raise PathNotAllowed(f"invalid job id {job_id!r}")
    for name in ("checkpoint-best.pth", "checkpoint-last.pth"):
        if (train_dir / name).is_file():
            return train_dir / name
    raise PathNotAllowed(f"job {job_id} left no checkpoint to start a {kind} job from")


@dataclass(frozen=True)
class JobPlan:
    """A validated job, with resolved absolute paths; stored as the job's params (so it can be resumed)."""

    kind: str
    data_dir: str
    model_name: str
    epochs: int
    val_dir: str | None = None
    init: str | None = None
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    auto_deploy: bool = False

    @property
    def task(self) -> str:
        """The export task: a fine-tuned classifier or a pretrained reconstruction model."""
        return "classify" if self.kind == "finetune" else "reconstruct"

    @property
    def eval_dir(self) -> Path:
        """Labelled images the verification scores: val_dir, else DATA_DIR/val, else DATA_DIR."""
        if self.val_dir:
            return Path(self.val_dir)
        return datasets.val_dir(self.data_dir) or Path(self.data_dir)

    @property
    def train_dir(self) -> Path:
        """DATA_DIR/train, else DATA_DIR (`contracts.datasets`)."""
        return datasets.train_dir(self.data_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobPlan:
        return cls(**values)
