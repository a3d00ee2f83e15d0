"""The guards of a rollout and how they judge a step's figures (summed over every gateway's report,
lomar_serve/common/rollout_figures.py). Pure functions; the control plane's rollout controller applies the verdict.

Each guard compares the candidate with the baseline measured over the same step, so a machine that is slow or busy for
both does not trip it:
- error_rate: the candidate's share of failed calls exceeds the baseline's by more than `max_error_rate`;
- latency_p50 / latency_p99: the candidate's median / 99th percentile exceeds the baseline's times `max_p50_ratio` /
  `max_p99_ratio`, plus `latency_slack_ms` (a millisecond of noise on a 3 ms model is no regression);
- agreement (classifiers): the share of images whose top-1 label is the same label for both versions is below
  `min_agreement` (labels by name, from each version's model card: a version with permuted labels disagrees);
- similarity (embeddings, reconstructions): the mean cosine similarity of their outputs is below `min_similarity`;
- confidence (classifiers): the candidate's mean top-1 probability falls below the baseline's, on the same images, by
  more than `max_confidence_drop`.
A guard judges only once it has `min_samples` samples (calls, or compared images); before that it is pending. One
tripped guard rolls the rollout back at once. A step passes when it has lasted `min_seconds` and the candidate has had
`min_requests` requests, with error rate and latency passing and at least one agreement guard (agreement or
similarity) passing: a candidate is promoted only on evidence that it answers like the baseline.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from lomar_serve.common.rollout_figures import StepFigures

Status = Literal["pass", "trip", "pending"]
Action = Literal["wait", "advance", "promote", "rollback"]
OUTPUT_GUARDS = ("agreement", "similarity")  # a step passes with at least one of them passing


@dataclass(frozen=True)
class Guards:
    """Thresholds of a rollout's guards (defaults: docs/rollouts.md)."""

    max_error_rate: float = 0.02  # candidate error rate minus the baseline's
    max_p50_ratio: float = 1.5  # candidate p50 / baseline p50
    max_p99_ratio: float = 2.0  # candidate p99 / baseline p99
    latency_slack_ms: float = 20.0  # added to both latency limits
    min_agreement: float = 0.8  # top-1 label agreement
    min_similarity: float = 0.8  # mean cosine similarity of outputs
    max_confidence_drop: float = 0.2  # baseline's mean top-1 probability minus the candidate's
    min_samples: int = 20  # samples a guard needs before it judges

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "min_agreement", "max_confidence_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be between -1 and 1, got {self.min_similarity}")
        if self.max_p50_ratio < 1.0 or self.max_p99_ratio < 1.0 or self.latency_slack_ms < 0:
            raise ValueError("latency ratios must be at least 1 and the slack not negative")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Guards:
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known})


@dataclass(frozen=True)
class Check:
    """One guard's verdict on a step's figures."""

    guard: str
    status: Status
    value: float | None  # the measured figure (None while there is none)
    limit: float | None  # the threshold it is held to (None while it cannot be set)
    samples: int
    detail: str  # the sentence a rollback records

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    checks: tuple[Check, ...]


def _judged(guard: str, value: float | None, limit: float | None, samples: int, needed: int, bad: bool,
            detail: str) -> Check:
    if value is None or limit is None or samples < needed:
        return Check(guard, "pending", value, limit, samples, f"{guard}: {samples}/{needed} samples")
    return Check(guard, "trip" if bad else "pass", value, limit, samples, detail)


def checks(guards: Guards, figures: StepFigures, baseline: str, candidate: str) -> tuple[Check, ...]:
    """Every guard's verdict on the figures of one step."""
    base, cand = figures.version(baseline), figures.version(candidate)
    agreement, need = figures.agreement, guards.min_samples
    found: list[Check] = []
    if cand.error_rate is not None:
        limit = (base.error_rate or 0.0) + guards.max_error_rate
        found.append(_judged("error_rate", cand.error_rate, limit, cand.requests, need, cand.error_rate > limit,
                             f"error rate {cand.error_rate:.1%} of {cand.requests} calls to version {candidate} "
                             f"(baseline {base.error_rate or 0.0:.1%}; limit {limit:.1%})"))
    else:
        found.append(_judged("error_rate", None, None, 0, need, False, ""))
    for guard, q, ratio in (("latency_p50", 0.5, guards.max_p50_ratio), ("latency_p99", 0.99, guards.max_p99_ratio)):
        mine, theirs = cand.quantile(q), base.quantile(q)
        samples = min(cand.calls, base.calls)
        limit = None if theirs is None else theirs * ratio + guards.latency_slack_ms / 1000.0
        bad = mine is not None and limit is not None and mine > limit
        found.append(_judged(guard, mine, limit, samples, need, bad,
                             f"{guard} {_ms(mine)} of version {candidate} (baseline {_ms(theirs)}; limit "
                             f"{_ms(limit)})"))
    top1 = agreement.top1
    found.append(_judged("agreement", top1, guards.min_agreement, agreement.top1_compared, need,
                         top1 is not None and top1 < guards.min_agreement,
                         f"top-1 agreement {_pct(top1)} of version {candidate} with {baseline} on "
                         f"{agreement.top1_compared} images (minimum {guards.min_agreement:.0%})"))
    similarity = agreement.similarity
    found.append(_judged("similarity", similarity, guards.min_similarity, agreement.similarity_count, need,
                         similarity is not None and similarity < guards.min_similarity,
                         f"mean cosine similarity {similarity if similarity is None else round(similarity, 3)} of "
                         f"version {candidate}'s outputs with {baseline}'s on {agreement.similarity_count} images "
                         f"(minimum {guards.min_similarity})"))
    drop = agreement.confidence_drop
    found.append(_judged("confidence", drop, guards.max_confidence_drop, agreement.top1_compared, need,
                         drop is not None and drop > guards.max_confidence_drop,
                         f"mean top-1 probability of version {candidate} {_pct(drop)} below {baseline}'s on "
                         f"{agreement.top1_compared} images (maximum drop {guards.max_confidence_drop:.0%})"))
    return tuple(found)


def decide(guards: Guards, figures: StepFigures, baseline: str, candidate: str, *, elapsed_s: float,
           min_seconds: float, min_requests: int, last_step: bool) -> Verdict:
    """What to do with a running step: roll back (a guard tripped), wait, advance to the next step, or promote."""
    found = checks(guards, figures, baseline, candidate)
    tripped = [check.detail for check in found if check.status == "trip"]
    if tripped:
        return Verdict("rollback", "; ".join(tripped), found)
    requests = figures.version(candidate).requests
    if elapsed_s < min_seconds or requests < min_requests:
        return Verdict("wait", f"{elapsed_s:.0f}/{min_seconds:.0f} s, {requests}/{min_requests} requests to "
                               f"version {candidate}", found)
    by_guard = {check.guard: check for check in found}
    waiting = [name for name in ("error_rate", "latency_p50", "latency_p99") if by_guard[name].status != "pass"]
    if not any(by_guard[name].status == "pass" for name in OUTPUT_GUARDS):
        waiting.append(" or ".join(OUTPUT_GUARDS))
    if waiting:
        return Verdict("wait", f"waiting for samples of {', '.join(waiting)}", found)
    return Verdict("promote" if last_step else "advance", "every guard passed", found)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
