"""What a retrain job is asked to do: the request (validated at the HTTP edge) and the resolved plan it runs.

A request names data and a starting point; `JobRequest.plan()` confines every path to the data roots (or, for
checkpoints, to earlier jobs' folders), checks names, and keeps only allowed training settings, each passed to
the training program as one `--flag=value` argument (never through a shell). The allowed settings are the
training config's own scalar fields (training.config.option_types: no paths), less those the job sets itself.
The architecture (`model` and `model_options`) must be a valid LoMaRConfig whose training, at the requested batch
size and image size, fits the job memory budget (`lomar_serve.jobs.budget`).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from contracts import datasets
from contracts.checkpoints import CONFIG_FILE, final_checkpoint
from contracts.model_repository import DEFAULT_CLASSIFIER, DEFAULT_MODEL_NAMES, DEFAULT_RECONSTRUCTOR
from lomar_serve.jobs.budget import MemoryBudget
from lomar_serve.jobs.errors import InvalidName, LifecycleError, PathNotAllowed
from lomar_serve.jobs.ingest import INGEST, IngestPlan, IngestRequest
from lomar_serve.jobs.paths import DataRoots, check_model_name
from training.config import (FinetuneConfig, PretrainConfig, TrainConfig, available_cpus, make_config,  # no torch
                             option_types)
from training.errors import ConfigError
from training.models.architectures import model_config  # no torch
from training.models.config import LoMaRConfig

ARCHITECTURE = re.compile(r"^[a-z0-9_]{1,64}$")
OPTION_KEY = re.compile(r"^[a-z_]{1,32}$")
TRAINING_CONFIGS: dict[str, type[TrainConfig]] = {"finetune": FinetuneConfig, "pretrain": PretrainConfig}
SET_BY_JOB = ("epochs", "model", "progress", "auto_resume")  # commands.training_command passes these itself
# Training settings a request may set, per job kind, with their types.
TRAINING_OPTIONS: dict[str, dict[str, type]] = {
    kind: {name: type_ for name, type_ in option_types(config).items() if name not in SET_BY_JOB}
    for kind, config in TRAINING_CONFIGS.items()}
JOB_ID_PATTERN = r"^[a-f0-9]{1,32}$"  # JobQueue.submit makes hex ids
EXPORT_TASKS = {"finetune": "classify", "pretrain": "reconstruct"}  # job kind -> what its export serves
Scalar = bool | int | float | str


class JobRequest(BaseModel):
    """POST /v1/admin/jobs body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["finetune", "pretrain"] = "finetune"
    data_dir: str = Field(description="labelled image folder (CLASS/*.png, or train/ and val/), inside a data root")
    val_dir: str | None = Field(None, description="validation folder inside a data root (default: DATA_DIR/val)")
    init: str | None = Field(None, description="checkpoint to start from, inside a data root")
    from_job: str | None = Field(None, pattern=JOB_ID_PATTERN,
                                 description="start from the checkpoint of this earlier job")
    model: str | None = Field(None, description="architecture name, e.g. lomar_tiny_patch16")
    model_options: dict[str, Scalar] = Field(default_factory=dict, description="architecture overrides, e.g. depth")
    model_name: str | None = Field(None, description="Triton model to add the version to (default "
                                                     f"{DEFAULT_CLASSIFIER} / {DEFAULT_RECONSTRUCTOR})")
    epochs: int = Field(10, ge=1, le=100_000)
    options: dict[str, Scalar] = Field(default_factory=dict, description="training settings: " + "; ".join(
        f"{kind}: {', '.join(sorted(names))}" for kind, names in TRAINING_OPTIONS.items()))
    auto_deploy: bool = Field(False, description="deploy the new version when its evaluation is not worse "
                                                 "than the serving version's")

    def plan(self, roots: DataRoots, jobs_dir: Path, memory: MemoryBudget | None = None) -> JobPlan:
        """Resolve and check everything; raises PathNotAllowed / InvalidName / LifecycleError / OverMemoryBudget.

        memory: the job memory budget; None = `MemoryBudget.of(None)` (3/4 of this machine's memory).
        """
        if self.kind == "pretrain" and (self.init or self.from_job):
            raise LifecycleError("a pretrain job starts from a new model (give `model`); init and from_job are "
                                 "starting points of finetune jobs")
        data_dir = roots.resolve(self.data_dir, kind="data_dir", must_be_dir=True)
        val_dir = roots.resolve(self.val_dir, kind="val_dir", must_be_dir=True) if self.val_dir else None
        init = roots.resolve(self.init, kind="init", must_be_dir=False) if self.init else None
        if self.kind == "finetune":  # its class folders are its labels: each must lie inside the roots too
            for folder in (datasets.train_dir(data_dir), val_dir or datasets.val_dir(data_dir)):
                if folder is not None:
                    roots.class_folders(folder)
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
        options = {key: check_option(self.kind, key, value) for key, value in self.options.items()}
        try:  # the training program's own validation (ranges, choices), before anything is queued
            config = make_config(TRAINING_CONFIGS[self.kind], {
                **options, "data_dir": str(data_dir), "epochs": self.epochs, "model": self.model or "",
                "model_options": dict(self.model_options), **({"init": str(init)} if init else {})})
        except ConfigError as error:
            raise LifecycleError(f"invalid training options: {error}") from None
        budget = memory or MemoryBudget.of(None)
        architecture = job_architecture(config, self.model, init, datasets.train_dir(data_dir))
        if budget is not None and architecture is not None:
            budget.check(architecture, config.batch_size, config.image_size, self.kind == "pretrain",
                         fp32=config.device != "cuda" or config.amp == "none",
                         ema=isinstance(config, FinetuneConfig) and config.model_ema)
        name = DEFAULT_MODEL_NAMES[EXPORT_TASKS[self.kind]] if self.model_name is None else self.model_name
        return JobPlan(kind=self.kind, data_dir=str(data_dir), val_dir=str(val_dir) if val_dir else None,
                       init=str(init) if init else None, model=self.model, model_options=dict(self.model_options),
                       model_name=check_model_name(name),
                       epochs=self.epochs, options=options, auto_deploy=self.auto_deploy,
                       data_roots=tuple(str(root) for root in roots.roots))


def check_option(job_kind: str, key: str, value: Scalar) -> Scalar:
    """An allowed training setting of the right type; strings are short and cannot look like flags."""
    allowed = TRAINING_OPTIONS[job_kind]
    kind = allowed.get(key)
    if kind is None:
        raise LifecycleError(f"unknown or disallowed training option {key!r} for a {job_kind} job; "
                             f"allowed: {', '.join(sorted(allowed))}")
    if kind is bool or isinstance(value, bool):
        if kind is not bool or not isinstance(value, bool):
            raise LifecycleError(f"training option {key!r} must be a {kind.__name__}")
        return value
    if not isinstance(value, (int, float, str)):
        raise LifecycleError(f"training option {key!r} must be a {kind.__name__}")
    if kind is str:
        if not isinstance(value, str) or len(value) > 64 or value.startswith("-") or "\n" in value:
            raise LifecycleError(f"training option {key!r} must be a short string")
        return value
    if isinstance(value, str) or (kind is int and not isinstance(value, int)):
        raise LifecycleError(f"training option {key!r} must be a {kind.__name__}")
    if not math.isfinite(value):
        raise LifecycleError(f"training option {key!r} must be a finite number, got {value}")
    if key == "num_workers" and value > available_cpus():
        raise LifecycleError(f"num_workers must be at most the {available_cpus()} CPUs available here, got {value}")
    return kind(value)


def job_architecture(config: TrainConfig, model: str | None, init: Path | None,
                     train_dir: Path) -> LoMaRConfig | None:
    """The architecture the training program will build, read without torch: the request's `model`, else that of
    the run which wrote the `init` checkpoint (its config.yaml beside it); None when neither says (a checkpoint
    from elsewhere: its file fixes the architecture and is not read here). The training program's overrides
    (image size, classes, objective, `model_options`) are applied as it applies them.

    Raises:
        LifecycleError: an unknown architecture or a model option of the wrong type or out of bounds.
    """
    options: dict[str, Any] = {}
    if model is None and init is not None:
        earlier = earlier_run(init)
        model, options = earlier.get("model") or None, dict(earlier.get("model_options") or {})
    if model is None:
        return None
    if isinstance(config, PretrainConfig):
        overrides = config.architecture_overrides()
    else:
        overrides = config.architecture_overrides(max(1, len(datasets.class_names(train_dir))))
    try:
        return model_config(model, **{**options, **overrides})
    except (ConfigError, TypeError) as error:
        raise LifecycleError(f"invalid model options: {error}") from None


def earlier_run(checkpoint: Path) -> dict[str, Any]:
    """The training config saved beside a checkpoint by the run that wrote it ({} when absent or unreadable)."""
    try:
        values = yaml.safe_load((checkpoint.parent / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return values if isinstance(values, dict) else {}


def job_checkpoint(jobs_dir: Path, job_id: str, kind: str) -> Path:
    """The checkpoint an earlier job left (best for fine-tuning, else last)."""
    train_dir = (jobs_dir / job_id / "train").resolve()
    if not train_dir.is_relative_to(jobs_dir.resolve()):
        raise PathNotAllowed(f"invalid job id {job_id!r}")
    checkpoint = final_checkpoint(train_dir)
    if checkpoint is not None:
        return checkpoint
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
    # The resolved data roots the paths were confined to: the training and scoring programs get them
    # (--data-roots) and refuse any image that resolves outside them (a symlink inside a root pointing out).
    data_roots: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        """The export task: a fine-tuned classifier or a pretrained reconstruction model."""
        return EXPORT_TASKS[self.kind]

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
        return cls(**{**values, "data_roots": tuple(values.get("data_roots", ()))})  # JSON gives a list


def _request_kind(value: Any) -> str:
    """Which request model a POST /v1/admin/jobs body is: an ingest job's, else a training job's (whose `kind`
    defaults to finetune)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return INGEST if kind == INGEST else "training"


# POST /v1/admin/jobs body: a retrain job (finetune, pretrain) or an ingest job, told apart by `kind`.
AnyJobRequest = Annotated[Annotated[JobRequest, Tag("training")] | Annotated[IngestRequest, Tag(INGEST)],
                          Discriminator(_request_kind)]


def plan_from_dict(values: dict[str, Any]) -> JobPlan | IngestPlan:
    """A stored job's plan (its params), of its kind."""
    return IngestPlan.from_dict(values) if values.get("kind") == INGEST else JobPlan.from_dict(values)
