"""Response bodies of the admin API (`/v1/admin/...`); the request bodies live with the lifecycle
(`lomar_serve.jobs.spec.JobRequest`) and the route (`DeployRequest`)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lomar_serve.common.api_keys import KEY_NAME_PATTERN, SCOPE_DESCRIPTIONS, Scope
from lomar_serve.control_plane.rollout_schemas import Rollout
from lomar_serve.jobs.progress import job_eta
from lomar_serve.jobs.report import Disagreement, Evaluation, EvaluationReport


class Job(BaseModel):
    """One retrain job as stored (lomar_serve.jobs.store.JobRecord)."""

    id: str
    kind: str = Field(description="finetune | pretrain | ingest")
    state: str = Field(description="queued | running | succeeded | failed | cancelled | interrupted")
    stage: str = Field(description="'' (not started) | train | export | verify | deploy | done; an ingest job: "
                                   "ingest | done")
    params: dict[str, Any] = Field(description="the validated request")
    progress: float = Field(ge=0.0, le=1.0)
    metrics: dict[str, Any] = Field(description="latest training figures, verification results, deploy outcome; an "
                                                "ingest job's counts (`ingest`)")
    message: str = Field(description="what happened last (the error of a failed job)")
    log_path: str
    output_dir: str
    model_name: str = Field(description="the Triton model the job's version goes to ('' for an ingest job that "
                                        "names no model)")
    model_version: str | None
    created_at: float = Field(description="Unix time (the job store's clock)")
    updated_at: float
    worker: str | None = Field(None, description="the worker that claimed it last")
    heartbeat_at: float | None = Field(None, description="that worker's last heartbeat (Unix time)")
    cancel_requested: bool = Field(False, description="a cancel waits for the running job's worker to end it")
    eta_s: float | None = Field(None, description="seconds until training (or an ingest) ends, at the pace so far "
                                                  "(while it runs; null before the pace is known)")

    @model_validator(mode="before")
    @classmethod
    def _eta(cls, values: Any) -> Any:
        """A record's ETA, from the training figures its worker keeps in `metrics`."""
        if isinstance(values, dict) and "eta_s" not in values:
            values = {**values, "eta_s": job_eta(values.get("state", ""), values.get("stage", ""),
                                                 values.get("metrics") or {})}
        return values


class JobDetail(Job):
    log_tail: str = Field(description="the end of the job's log")


class JobList(BaseModel):
    jobs: list[Job] = Field(description="newest first")


class LogChunk(BaseModel):
    state: str
    offset: int = Field(ge=0, description="where the next chunk starts")
    text: str


class DeployEvent(BaseModel):
    action: str = Field(description="deploy | rollback | repair (the history made to agree with config.pbtxt "
                                    "after an interrupted switch or a hand edit)")
    version: str
    previous: str | None
    at: float = Field(description="Unix time")


class ModelSummary(BaseModel):
    """A model of the repository as the control plane sees it, without asking the Tritons."""

    model: str
    serving_version: str | None = Field(description="the version the model repository publishes as serving "
                                                    "(config.pbtxt's version policy), which every gateway follows")
    deployed: list[str] = Field(description="versions deployed in order; the last one serves")
    rollback_target: str | None
    versions: list[str] = Field(description="version folders in the model repository")


class ModelList(BaseModel):
    models: list[ModelSummary] = Field(description="every model of the repository (a folder with a config.pbtxt), "
                                                   "by name")


class ModelStatus(ModelSummary):
    cards: dict[str, dict[str, Any] | None] = Field(description="version on disk -> its model card (null: none or "
                                                                "unreadable)")
    loaded: dict[str, list[str] | None] = Field(description="Triton URL -> versions it has loaded and ready "
                                                            "(null: unreachable)")
    history: list[DeployEvent]
    rollout: Rollout | None = Field(None, description="the model's latest canary or shadow rollout (null: never had "
                                                      "one)")


class Switch(BaseModel):
    """The outcome of a deploy or rollback."""

    model: str
    version: str = Field(description="the version that serves now")
    previous: str | None = Field(description="the version that served before (null: none was deployed before; a "
                                             "model's first deploy)")
    changed: bool = Field(description="false when the version already served (a model's first version serves from "
                                      "its export on: its first deploy records it, `previous` null)")
    message: str = Field("", description="what happened, in a sentence")
    recorded: bool | None = Field(None, description="false: the switch is made (config.pbtxt publishes the version) "
                                                    "but the deploy history could not be written yet; the control "
                                                    "plane's reconcile loop records it once the store answers")
    previous_unloaded: bool | None = None
    seconds: float | None = None


class KeyRequest(BaseModel):
    """A new API key for the gateways."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY_NAME_PATTERN, description="who or what uses the key (1-64 letters, digits, "
                                                            "'_', '.', '@' or '-')")
    scopes: list[Scope] = Field(min_length=1, description="what the key allows: " + "; ".join(
        f"{scope}: {what}" for scope, what in SCOPE_DESCRIPTIONS.items()))
    rate_per_minute: int | None = Field(None, ge=1, le=1_000_000, description=(
        "requests a gateway accepts per minute with this key (429 with Retry-After beyond); unset: no limit"))
    max_collections: int | None = Field(None, ge=0, le=1_000_000, description=(
        "collections this key may have created at once (403 quota_exceeded beyond); unset: only the gateway's own "
        "limit"))


    @field_validator("rate_per_minute", "max_collections", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        """`true` or "5" is not a number (pydantic's lax mode would take them); 5.0 is."""
        if isinstance(value, (bool, str)):
            raise ValueError("must be a JSON integer")
        return value


class Key(BaseModel):
    """An API key as listed (its secret is never stored; only its SHA-256)."""

    id: str = Field(description="the key's public id (the part after `lmk_`)")
    name: str
    scopes: list[str]
    rate_per_minute: int | None
    max_collections: int | None
    created_at: float = Field(description="Unix time (the job store's clock)")
    revoked_at: float | None = Field(description="Unix time of the revocation; null while the key is active")


class NewKey(Key):
    key: str = Field(description="the key itself, shown this once: send it as `Authorization: Bearer <key>`")


class KeyList(BaseModel):
    keys: list[Key]


class Dataset(BaseModel):
    path: str = Field(description="as a job request's data_dir names it: relative to the first data root, else "
                                  "absolute")
    classes: list[str] = Field(description="its class folders")
    splits: bool = Field(description="train/ and val/ (else the job validates on its training images)")


class TrainingOption(BaseModel):
    name: str
    type: str = Field(description="bool | int | float | str")
    default: bool | int | float | str | None
    help: str
    choices: list[str] = Field(description="the values allowed, when they are few")
    common: bool = Field(description="one of the settings a form shows at once")


class JobForm(BaseModel):
    """What a form for a job request offers (the console's)."""

    data_roots: list[str]
    datasets: list[Dataset] = Field(description="labelled image folders found at most two levels under the roots")
    architectures: list[str] = Field(description="the `model` names a new model may be built as")
    model_names: dict[str, str] = Field(description="job kind -> the Triton model its version goes to by default")
    options: dict[str, list[TrainingOption]] = Field(description="job kind -> the training settings it may set")


class JobReport(EvaluationReport):
    """The evaluation report of the version a job exported, made by its verification stage on the held-out images
    (lomar_serve/jobs/report.py)."""

    job_id: str
    data_dir: str = Field(description="the evaluation images, relative to the data root that holds them")


class Comparison(BaseModel):
    """A job's version beside the version that served when the job verified it, on the same evaluation images."""

    job_id: str
    model: str
    data_dir: str = Field(description="the evaluation images, relative to the data root that holds them")
    candidate: EvaluationReport = Field(description="the job's version")
    baseline: EvaluationReport | None = Field(description="the version that served when the job was verified "
                                                          "(null: none did)")
    serving_version: str | None = Field(description="the version the model repository publishes as serving now")
    baseline_is_serving: bool = Field(description="the baseline is still the serving version (false: the comparison "
                                                  "is with a version that has been replaced since)")
    not_worse: bool = Field(description="the job's version scores at least as well as the baseline")
    disagreements: list[Disagreement] = Field(description="images on which the two versions predict different "
                                                          "labels; those where exactly one is right first")
    disagreement_count: int = Field(ge=0)

    @classmethod
    def of(cls, job_id: str, evaluation: Evaluation, serving: str | None) -> Comparison:
        """The comparison a job's verification wrote, with the version that serves now."""
        baseline = evaluation.baseline
        return cls(job_id=job_id, model=evaluation.candidate.model, data_dir=evaluation.data_dir,
                   candidate=evaluation.candidate, baseline=baseline, serving_version=serving,
                   baseline_is_serving=baseline is not None and baseline.version == serving,
                   not_worse=evaluation.not_worse, disagreements=evaluation.disagreements,
                   disagreement_count=evaluation.disagreement_count)


class RunRecord(BaseModel):
    """A training run began (or resumed) at `step`."""

    step: int
    time: float = Field(description="Unix time (the training machine's clock)")
    epoch: int = Field(description="the epoch it starts at (0-based)")
    epochs: int
    steps_per_epoch: int
    total_steps: int
    images: int = Field(description="training images")


class TrainRecord(BaseModel):
    """Every `log_every` optimizer steps: the step's loss, learning rate and throughput."""

    step: int
    time: float
    epoch: int
    loss: float
    lr: float
    img_per_s: float = Field(description="training images per second since the previous record")
    memory_mb: float | None = None


class EpochRecord(BaseModel):
    """The end of an epoch: its mean training loss."""

    step: int
    time: float
    epoch: int
    loss: float
    lr: float


class ValRecord(BaseModel):
    """A fine-tune's validation after an epoch (percent; loss: cross-entropy)."""

    step: int
    time: float
    epoch: int
    loss: float
    top1: float
    top5: float
    count: int


class MetricsChunk(BaseModel):
    """The records a job's training appended to its metrics.jsonl since the cursor `after`, by kind, in order.
    A resumed run appends a new `run` record and logs the steps after its checkpoint again (same step numbers)."""

    job_id: str
    state: str
    stage: str
    progress: float = Field(ge=0.0, le=1.0)
    eta_s: float | None = Field(description="seconds until training ends (while it trains)")
    runs: list[RunRecord]
    train: list[TrainRecord]
    epochs: list[EpochRecord]
    val: list[ValRecord]
    next: int = Field(ge=0, description="the cursor of the next call (`after`): the byte offset in metrics.jsonl after "
                                        "the last complete record returned")

    @classmethod
    def of(cls, job: Job, records: list[dict[str, Any]], next_offset: int) -> MetricsChunk:
        """The chunk of `records` (metrics.jsonl lines, jobs/progress.py): each by its split, in order; a record that
        does not have the fields of its kind is left out."""
        kinds: dict[str, tuple[str, type[BaseModel]]] = {
            "run": ("runs", RunRecord), "train": ("train", TrainRecord), "epoch": ("epochs", EpochRecord),
            "val": ("val", ValRecord)}
        grouped: dict[str, list[BaseModel]] = {field: [] for field, _ in kinds.values()}
        for record in records:
            field, model = kinds.get(record.get("split"), (None, None))
            if model is None:
                continue
            try:
                grouped[field].append(model.model_validate(record))
            except ValidationError:
                continue
        return cls(job_id=job.id, state=job.state, stage=job.stage, progress=job.progress, eta_s=job.eta_s,
                   next=next_offset, **grouped)
