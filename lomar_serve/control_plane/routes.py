"""Admin API (bearer token): retrain jobs, deploys and rollbacks. The work happens in the control plane's
queue (queue.py) and deployer (deploy.py), on the records of lomar_serve.jobs.

Routes are plain functions (FastAPI runs them on its thread pool): they talk to SQLite, start processes and wait
for Triton to load models, none of which may block the event loop.
"""
from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.model_repository import MAX_VERSION, MODEL_NAME_PATTERN
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.paging import MAX_OFFSET, MAX_PAGE
from lomar_serve.control_plane.auth import DISABLED_MESSAGE
from lomar_serve.common.api_keys import KEY_ID_PATTERN
from lomar_serve.control_plane.rollout_schemas import Rollout, RolloutRequest
from lomar_serve.control_plane.schemas import (Comparison, Job, JobDetail, JobList, JobReport, Key, KeyList,
                                               KeyRequest, LogChunk, MetricsChunk, ModelList, ModelStatus, NewKey,
                                               Switch)
from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.jobs.budget import MemoryBudget
from lomar_serve.jobs.errors import AdminDisabled, RolloutNotFound
from lomar_serve.jobs.progress import read_chunk
from lomar_serve.jobs.report import THUMBNAIL_PATTERN
from lomar_serve.jobs.ingest import IngestRequest
from lomar_serve.jobs.spec import JOB_ID_PATTERN, AnyJobRequest

LOGGER = logging.getLogger(__name__)
LOG_CHUNK_BYTES = 64 * 1024
METRICS_CHUNK_BYTES = 256 * 1024  # about 1,500 records


def get_lifecycle(request: Request) -> Lifecycle:
    lifecycle = getattr(request.app.state, "lifecycle", None)
    if lifecycle is None:
        raise AdminDisabled(DISABLED_MESSAGE)
    return lifecycle


# Declares the scheme in OpenAPI (the /docs "Authorize" button); the check is AdminAuth's, on the raw header.
ADMIN_TOKEN = HTTPBearer(scheme_name="AdminToken", auto_error=False,
                         description="the control plane's admin token (LOMAR_ADMIN_TOKEN)")


def require_admin(request: Request,
                  _: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)] = None) -> None:
    """Every admin route: the bearer token must be the admin token (checked before anything else is read)."""
    get_lifecycle(request).auth.check(request.headers.get("authorization"))


LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="job id")]
ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="Triton model name")]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="the key's public id")]
# 400: a body FastAPI could not read; 411/413: a body AdminGuard refuses before reading it; 503/504: Triton down
# or slow while loading a version.
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=error_responses(400, 401, 403, 404, 409, 411, 413, 422, 503, 504))


# Prometheus scrapes /metrics without the admin token, as it does the gateway's (job counts and durations only).
metrics_router = APIRouter(tags=["health"])


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION, description="the model version to serve")
    canary: RolloutRequest | None = Field(None, description=(
        "roll the version out step by step instead of at once: at each step it answers that share of the model's "
        "requests on every gateway, while guards compare it with the serving version; promoted after the last step, "
        "rolled back when a guard trips (a number: one step at that percentage)"))
    shadow: RolloutRequest | None = Field(None, description=(
        "as canary, but the version only receives a copy of that share of requests, and clients always get the "
        "serving version's answer"))

    @field_validator("version", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        """`true` or "2" is not a version number (pydantic's lax mode would take them); 2.0 is."""
        if isinstance(value, (bool, str)):
            raise ValueError("the version must be a JSON integer")
        return value

    @model_validator(mode="after")
    def _one_rollout(self) -> DeployRequest:
        if self.canary is not None and self.shadow is not None:
            raise ValueError("a deploy is a canary or a shadow rollout, not both")
        return self


@router.post("/jobs", status_code=202, summary="Start a job: retrain (training, export, verification) or ingest a "
             "folder into an image collection (`kind`)")
def submit_job(body: AnyJobRequest, lifecycle: LifecycleDep) -> Job:
    if isinstance(body, IngestRequest):
        plan = body.plan(lifecycle.roots)
    else:
        plan = body.plan(lifecycle.roots, lifecycle.jobs_dir, MemoryBudget.of(lifecycle.settings.job_memory_gb))
    record = lifecycle.jobs.submit(plan)
    LOGGER.info("admin: job %s submitted (%s of %s)", record.id, plan.kind, plan.data_dir)
    return Job.model_validate(record.to_dict())


@router.get("/jobs", summary="Jobs, newest first")
def list_jobs(lifecycle: LifecycleDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> JobList:
    return JobList.model_validate({"jobs": [record.to_dict() for record in lifecycle.jobs.list(limit)]})


@router.get("/jobs/{job_id}", summary="A job: state, stage, progress, metrics, log tail")
def show_job(job_id: JobId, lifecycle: LifecycleDep,
             tail: Annotated[int, Query(ge=0, le=LOG_CHUNK_BYTES)] = 4000) -> JobDetail:
    return JobDetail.model_validate(lifecycle.jobs.describe(job_id, tail))


@router.get("/jobs/{job_id}/log", summary="A chunk of the job's log from a byte offset (for following it)")
def job_log(job_id: JobId, lifecycle: LifecycleDep,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="byte offset in the log")] = 0) -> LogChunk:
    record = lifecycle.store.get_job(job_id)
    try:
        with open(record.log_path, "rb") as log:
            log.seek(offset)
            chunk = log.read(LOG_CHUNK_BYTES)
    except OSError:
        chunk = b""
    return LogChunk(state=record.state, offset=offset + len(chunk), text=chunk.decode("utf-8", errors="replace"))


@router.get("/jobs/{job_id}/metrics", summary="The training metrics a job logged after a cursor: loss, learning "
            "rate and images/s per logged step, validation loss and top-1 per epoch (poll with the returned `next`)")
def job_metrics(job_id: JobId, lifecycle: LifecycleDep,
                after: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="the `next` of the previous call; 0: from "
                                                                           "the start")] = 0) -> MetricsChunk:
    record = lifecycle.store.get_job(job_id)
    records, next_offset = read_chunk(record.output_dir, after, METRICS_CHUNK_BYTES)
    return MetricsChunk.of(Job.model_validate(record.to_dict()), records, next_offset)


@router.get("/jobs/{job_id}/report", summary="The evaluation report of the job's version on its held-out images: "
            "top-1/top-5, per-label precision and recall, confusion matrix, worst mistakes")
def job_report(job_id: JobId, lifecycle: LifecycleDep) -> JobReport:
    evaluation = lifecycle.jobs.evaluation(job_id)
    return JobReport(**evaluation.candidate.model_dump(), job_id=job_id, data_dir=evaluation.data_dir)


@router.get("/jobs/{job_id}/compare", summary="The job's version beside the serving version on the same evaluation "
            "images: both reports and the images on which they disagree")
def compare_job(job_id: JobId, lifecycle: LifecycleDep) -> Comparison:
    evaluation = lifecycle.jobs.evaluation(job_id)
    return Comparison.of(job_id, evaluation, lifecycle.deployer.serving_version(evaluation.candidate.model))


@router.get("/jobs/{job_id}/thumbnails/{name}", response_class=FileResponse,
            summary="A thumbnail of the job's evaluation report (96 px JPEG of an evaluation image as the model saw it)",
            responses={200: {"content": {"image/jpeg": {}}}})
def job_thumbnail(job_id: JobId, lifecycle: LifecycleDep,
                  name: Annotated[str, Path(pattern=THUMBNAIL_PATTERN, description="a `thumbnail` of the report")]
                  ) -> FileResponse:
    return FileResponse(lifecycle.jobs.thumbnail(job_id, name), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued, running or interrupted job (a running one: "
             "its worker ends it; `cancel_requested` while it has not yet)")
def cancel_job(job_id: JobId, lifecycle: LifecycleDep) -> Job:
    LOGGER.info("admin: cancel job %s", job_id)
    return Job.model_validate(lifecycle.jobs.cancel(job_id).to_dict())


@router.post("/jobs/{job_id}/resume", summary="Resume an interrupted, failed or cancelled job from its last "
             "checkpoint")
def resume_job(job_id: JobId, lifecycle: LifecycleDep) -> Job:
    LOGGER.info("admin: resume job %s", job_id)
    return Job.model_validate(lifecycle.jobs.resume(job_id).to_dict())


@router.get("/models", summary="Every model of the repository: serving version, deployed versions, versions on disk")
def models(lifecycle: LifecycleDep) -> ModelList:
    return ModelList.model_validate({"models": lifecycle.deployer.summaries()})


@router.get("/models/{name}", summary="Serving version, deployed versions, versions on disk, history, rollout")
def model_status(name: ModelName, lifecycle: LifecycleDep) -> ModelStatus:
    return ModelStatus.model_validate({**lifecycle.deployer.status(name), "rollout": lifecycle.rollouts.describe(name)})


@router.post("/models/{name}/deploy", summary="Load a version, smoke-test it, then route requests to it (at once, "
             "or step by step as a canary or shadow rollout)")
def deploy(name: ModelName, body: DeployRequest, lifecycle: LifecycleDep) -> Switch | Rollout:
    if body.canary is not None or body.shadow is not None:
        return begin_rollout(name, body, lifecycle)
    LOGGER.info("admin: deploy %s version %d", name, body.version)
    with lifecycle.metrics.switch("deploy"):
        return Switch.model_validate(lifecycle.deployer.deploy(name, body.version))


@router.post("/models/{name}/rollback", summary="Serve again the version deployed before the serving one")
def rollback(name: ModelName, lifecycle: LifecycleDep) -> Switch:
    LOGGER.info("admin: roll back %s", name)
    with lifecycle.metrics.switch("rollback"):
        return Switch.model_validate(lifecycle.deployer.rollback(name))


@metrics_router.get("/metrics", summary="Prometheus metrics of the control plane: jobs by state, job durations, "
                    "deploy and rollback durations", response_class=Response,
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                     "description": "Prometheus text exposition format"}})
def metrics(lifecycle: LifecycleDep) -> Response:
    return Response(lifecycle.metrics.render(), media_type=lifecycle.metrics.content_type)


@router.post("/keys", status_code=201, summary="Create an API key for the gateways (the key is in this answer only)")
def create_key(body: KeyRequest, lifecycle: LifecycleDep) -> NewKey:
    record, key = lifecycle.keys.create(body)
    return NewKey.model_validate({**record.to_dict(), "key": key})


@router.get("/keys", summary="Every API key, revoked ones included (never their secrets)")
def list_keys(lifecycle: LifecycleDep) -> KeyList:
    return KeyList.model_validate({"keys": [record.to_dict() for record in lifecycle.keys.list()]})


@router.delete("/keys/{key_id}", summary="Revoke an API key: every gateway refuses it within a few seconds")
def revoke_key(key_id: KeyId, lifecycle: LifecycleDep) -> Key:
    return Key.model_validate(lifecycle.keys.revoke(key_id).to_dict())


def begin_rollout(name: str, body: DeployRequest, lifecycle: Lifecycle) -> Rollout:
    mode, request = ("canary", body.canary) if body.canary is not None else ("shadow", body.shadow)
    assert request is not None
    LOGGER.info("admin: %s of %s version %d at %s %%", mode, name, body.version, request.steps)
    record = lifecycle.rollouts.begin(name, body.version, request.plan(mode))
    return Rollout.model_validate(lifecycle.rollouts.describe(record.model))


@router.get("/models/{name}/rollout", summary="The model's latest canary or shadow rollout, with its guards' figures")
def rollout_status(name: ModelName, lifecycle: LifecycleDep) -> Rollout:
    described = lifecycle.rollouts.describe(name)
    if described is None:
        raise RolloutNotFound(f"{name} never had a rollout")
    return Rollout.model_validate(described)


@router.post("/models/{name}/rollout/promote", summary="Deploy the candidate of the running rollout now")
def promote_rollout(name: ModelName, lifecycle: LifecycleDep) -> Rollout:
    LOGGER.info("admin: promote the rollout of %s", name)
    lifecycle.rollouts.promote(name)
    return Rollout.model_validate(lifecycle.rollouts.describe(name))


@router.post("/models/{name}/rollout/abort", summary="End the running rollout: every request back on the serving "
             "version (the candidate is unloaded after the drain time)")
def abort_rollout(name: ModelName, lifecycle: LifecycleDep) -> Rollout:
    LOGGER.info("admin: abort the rollout of %s", name)
    lifecycle.rollouts.abort(name)
    return Rollout.model_validate(lifecycle.rollouts.describe(name))

