"""Request and response bodies of the admin API's rollouts: the `canary` / `shadow` field of a deploy request, and a
rollout as `GET /v1/admin/models/{name}` and the rollout routes show it (rollouts.py, docs/rollouts.md)."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lomar_serve.jobs.guards import Guards
from lomar_serve.jobs.rollouts import MAX_STEPS, RolloutPlan


class GuardThresholds(BaseModel):
    """A rollout's guards (each compares the candidate with the baseline over the same step)."""

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(Guards.max_error_rate, ge=0, le=1, description=(
        "trips when the candidate's share of failed calls exceeds the baseline's by more than this"))
    max_p50_ratio: float = Field(Guards.max_p50_ratio, ge=1, le=1000, description=(
        "trips when the candidate's median latency exceeds the baseline's times this (plus latency_slack_ms)"))
    max_p99_ratio: float = Field(Guards.max_p99_ratio, ge=1, le=1000, description=(
        "trips when the candidate's 99th-percentile latency exceeds the baseline's times this (plus "
        "latency_slack_ms)"))
    latency_slack_ms: float = Field(Guards.latency_slack_ms, ge=0, le=600_000, description=(
        "milliseconds added to both latency limits"))
    min_agreement: float = Field(Guards.min_agreement, ge=0, le=1, description=(
        "classifiers: trips when the share of images both versions give the same top-1 label (by name) is below "
        "this"))
    min_similarity: float = Field(Guards.min_similarity, ge=-1, le=1, description=(
        "embeddings and reconstructions: trips when the mean cosine similarity of both versions' outputs is below "
        "this"))
    max_confidence_drop: float = Field(Guards.max_confidence_drop, ge=0, le=1, description=(
        "classifiers: trips when the candidate's mean top-1 probability is below the baseline's, on the same "
        "images, by more than this"))
    min_samples: int = Field(Guards.min_samples, ge=1, le=1_000_000, description=(
        "samples (calls, compared images) a guard needs before it judges"))


class RolloutRequest(BaseModel):
    """How a canary or shadow rollout proceeds. A bare number is one step at that percentage."""

    model_config = ConfigDict(extra="forbid")

    # A set: the steps are taken in increasing order whatever order they are written in (the schema says "unique",
    # which it can; "increasing" it cannot).
    steps: set[Annotated[float, Field(gt=0, lt=100)]] = Field(min_length=1, max_length=MAX_STEPS, description=(
        "percent of the model's requests at each step, taken in increasing order, each between 0 and 100 "
        "(exclusive): canary, "
        "answered by the candidate; shadow, also sent to it and compared. After the last step the candidate is "
        "deployed (100 %)"))
    min_requests: int = Field(RolloutPlan.min_requests, ge=1, le=100_000_000, description=(
        "requests to the candidate a step needs before it may pass"))
    min_seconds: float = Field(RolloutPlan.min_seconds, ge=0, le=7 * 86400, description=(
        "seconds a step lasts at least"))
    guards: GuardThresholds = Field(default_factory=GuardThresholds)

    @model_validator(mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        """`"canary": 10` is `"canary": {"steps": [10]}`."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"steps": [value]}
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _unique(cls, value: object) -> object:
        """A step written twice is a mistake to report, not to drop."""
        if isinstance(value, list) and len({repr(step) for step in value}) != len(value):
            raise ValueError(f"each step once, got {value}")
        return value

    @model_validator(mode="after")
    def _a_plan(self) -> RolloutRequest:
        self.plan("canary")  # the steps' rule (ValueError: a 422 that says why)
        return self

    def plan(self, mode: str) -> RolloutPlan:
        return RolloutPlan(mode=mode, steps=tuple(sorted(self.steps)), min_requests=self.min_requests,
                           min_seconds=self.min_seconds, guards=Guards(**self.guards.model_dump()))


class RolloutCheck(BaseModel):
    guard: str = Field(description="error_rate | latency_p50 | latency_p99 | agreement | similarity | confidence")
    status: str = Field(description="pass | trip | pending (fewer samples than min_samples)")
    value: float | None = Field(description="the measured figure (seconds for latencies)")
    limit: float | None
    samples: int
    detail: str


class Rollout(BaseModel):
    """A canary or shadow rollout as the lifecycle store keeps it, with the guards' figures."""

    id: str
    model: str
    baseline: str = Field(description="the version that served when the rollout began")
    candidate: str
    mode: str = Field(description="canary | shadow")
    steps: list[float]
    step: int = Field(description="index of the current step")
    percent: float = Field(description="the share of requests at the current step")
    state: str = Field(description="running | promoting | promoted | rolled_back | aborted")
    reason: str = Field(description="why it is in its state: a tripped guard's figures, who promoted or aborted it")
    min_requests: int
    min_seconds: float
    guards: dict[str, Any]
    created_at: float = Field(description="Unix time (the lifecycle store's clock)")
    updated_at: float
    step_started_at: float
    events: list[dict[str, Any]] = Field(description="what happened, oldest first (each decision with its figures)")
    figures: dict[str, Any] | None = Field(None, description=(
        "while active, the current step's figures summed over every gateway's report; after, those of the last "
        "decision: per version calls, errors, error rate, p50/p99 (ms), mean confidence; the agreement"))
    checks: list[RolloutCheck] = Field(default_factory=list, description="each guard's verdict on those figures")
