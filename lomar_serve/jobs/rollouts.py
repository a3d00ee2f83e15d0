"""A rollout: a candidate version tried on part of a model's live traffic (canary) or on copies of it (shadow), step by
step, before it serves all of it. The record as the lifecycle store keeps it (store.py, table rollouts), its plan, its
states, and how a record is made to agree with what config.pbtxt publishes. Pure; the control plane's rollout
controller (lomar_serve/control_plane/rollouts.py) drives it.

States:
    running --(every step passed, or promoted by hand)--> promoting --(the candidate deployed)--> promoted
    running --(a guard tripped; the promotion's deploy failed)--> rolled_back
    running --(aborted by hand; the serving version changed outside the rollout)--> aborted
At most one rollout per model is active (running or promoting). The published file (common/rollouts.py) shows
`running` for both active states: a promotion ends the split by switching config.pbtxt itself.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from lomar_serve.common.rollouts import MODES, PublishedRollout
from lomar_serve.jobs.guards import Guards

ACTIVE_STATES = ("running", "promoting")
FINAL_STATES = ("promoted", "rolled_back", "aborted")
ROLLOUT_STATES = (*ACTIVE_STATES, *FINAL_STATES)
MAX_STEPS = 10


def new_rollout_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class RolloutPlan:
    """How a rollout proceeds: the share of requests at each step, how long and how many requests a step needs, and
    the guards. After the last step passes the candidate is deployed (100 %)."""

    mode: str  # canary | shadow
    steps: tuple[float, ...]  # percent of the model's requests at each step, ascending, each in (0, 100)
    min_requests: int = 100  # requests to the candidate at a step before it may pass
    min_seconds: float = 60.0  # seconds at a step before it may pass
    guards: Guards = field(default_factory=Guards)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(float(p) for p in self.steps))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= len(self.steps) <= MAX_STEPS:
            raise ValueError(f"a rollout has 1 to {MAX_STEPS} steps, got {len(self.steps)}")
        if any(not 0.0 < p < 100.0 for p in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps must be increasing percentages between 0 and 100 (exclusive; 100 % is the "
                             f"promotion), got {list(self.steps)}")
        if self.min_requests < 1 or self.min_seconds < 0:
            raise ValueError("min_requests must be at least 1 and min_seconds not negative")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "steps": list(self.steps), "min_requests": self.min_requests,
                "min_seconds": self.min_seconds, "guards": self.guards.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RolloutPlan:
        return cls(mode=values["mode"], steps=tuple(values["steps"]), min_requests=int(values["min_requests"]),
                   min_seconds=float(values["min_seconds"]), guards=Guards.from_dict(values["guards"]))


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout as stored."""

    id: str
    model: str
    baseline: str  # the serving version when it began
    candidate: str
    plan: RolloutPlan
    step: int  # index into plan.steps
    state: str  # one of ROLLOUT_STATES
    reason: str  # why it is in its state (a tripped guard's figures, who aborted it)
    created_at: float  # Unix time, the store's clock
    updated_at: float
    step_started_at: float  # when the current step began (a step lasts at least plan.min_seconds)
    events: tuple[dict[str, Any], ...] = ()  # what happened, oldest first: {at, action, step, percent, reason...}

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> float:
        return self.plan.steps[self.step]

    @property
    def last_step(self) -> bool:
        return self.step == len(self.plan.steps) - 1

    def published(self, lease_s: float) -> PublishedRollout:
        """The file gateways follow (common/rollouts.py): `running` while active, the final state after."""
        return PublishedRollout(id=self.id, model=self.model, mode=self.plan.mode, baseline=self.baseline,
                                candidate=self.candidate, step=self.step, percent=self.percent,
                                state="running" if self.active else self.state, lease_s=lease_s)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "baseline": self.baseline, "candidate": self.candidate,
                **self.plan.to_dict(), "step": self.step, "percent": self.percent, "state": self.state,
                "reason": self.reason, "created_at": self.created_at, "updated_at": self.updated_at,
                "step_started_at": self.step_started_at, "events": list(self.events)}


def reconciled(record: RolloutRecord, published: str | None) -> tuple[str, str] | None:
    """The state an active rollout moves to so that it agrees with the version config.pbtxt publishes, with why;
    None when it agrees. Nothing single published (an unreadable config.pbtxt): it cannot be told, left as it is."""
    if published is None or (published == record.baseline and record.state == "running"):
        return None
    if published == record.candidate:
        return "promoted", (f"config.pbtxt publishes version {record.candidate}: the promotion switched before the "
                            "control plane could record it")
    if published == record.baseline:  # promoting, and the deploy never switched: the control plane died before
        return "running", "the control plane stopped during the promotion, before its switch; running again"
    return "aborted", (f"config.pbtxt publishes version {published}, neither the baseline {record.baseline} nor the "
                       f"candidate {record.candidate}: the serving version was changed outside the rollout")
