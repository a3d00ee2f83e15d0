"""Response bodies of the admin API (`/v1/admin/...`); the request bodies live with the lifecycle
(`lomar_serve.jobs.spec.JobRequest`) and the route (`DeployRequest`)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lomar_serve.jobs.report import Disagreement, EvaluationReport


class Job(BaseModel):
    """One retrain job as stored (lomar_serve.jobs.store.JobRecord)."""

    id: str
    kind: str = Field(description="finetune | pretrain")
    state: str = Field(description="queued | running | succeeded | failed | cancelled | interrupted")
    stage: str = Field(description="'' (not started) | train | export | verify | deploy | done")
    params: dict[str, Any] = Field(description="the validated request")
    progress: float = Field(ge=0.0, le=1.0)
    metrics: dict[str, Any] = Field(description="latest training figures, verification results, deploy outcome")
    message: str = Field(description="what happened last (the error of a failed job)")
    log_path: str
    output_dir: str
    model_name: str
    model_version: str | None
    created_at: float = Field(description="Unix time (the job store's clock)")
    updated_at: float
    worker: str | None = Field(None, description="the worker that claimed it last")
    heartbeat_at: float | None = Field(None, description="that worker's last heartbeat (Unix time)")
    cancel_requested: bool = Field(False, description="a cancel waits for the running job's worker to end it")


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
    loaded: dict[str, list[str] | None] = Field(description="Triton URL -> versions it has loaded and ready "
                                                            "(null: unreachable)")
    history: list[DeployEvent]


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
