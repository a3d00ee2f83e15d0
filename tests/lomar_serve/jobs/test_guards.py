"""The guards of a rollout judging a step's figures, and the step logic: wait, advance, promote, roll back."""
from __future__ import annotations

import pytest

from lomar_serve.common.rollout_figures import StepFigures
from lomar_serve.jobs.guards import Guards, checks, decide
from lomar_serve.jobs.rollouts import RolloutPlan

BASE, CAND = "1", "2"


def figures(*, calls: int = 100, errors: int = 0, base_s: float = 0.010, cand_s: float = 0.010, agreed: float = 1.0,
            similar: float | None = None, base_conf: float = 0.9, cand_conf: float = 0.9) -> StepFigures:
    """`calls` answered by each version at fixed latencies, the candidate failing `errors` more; every candidate call
    compared on one image."""
    step = StepFigures()
    for _ in range(calls):
        step.version(BASE).observe(base_s, [base_conf])
        step.version(CAND).observe(cand_s, [cand_conf])
    step.version(CAND).errors = errors
    agreement = step.agreement
    agreement.top1_compared, agreement.top1_agreed = calls, round(calls * agreed)
    agreement.confidence_baseline, agreement.confidence_candidate = calls * base_conf, calls * cand_conf
    if similar is not None:
        agreement.similarity_count, agreement.similarity_sum = calls, calls * similar
    return step


def verdict(step: StepFigures, guards: Guards = Guards(), *, elapsed_s: float = 100.0, last_step: bool = False,
            min_requests: int = 50):
    return decide(guards, step, BASE, CAND, elapsed_s=elapsed_s, min_seconds=60.0, min_requests=min_requests,
                  last_step=last_step)


def by_guard(step: StepFigures, guards: Guards = Guards()) -> dict[str, str]:
    return {check.guard: check.status for check in checks(guards, step, BASE, CAND)}


def test_a_candidate_like_its_baseline_passes_every_guard_and_advances_then_promotes() -> None:
    assert set(by_guard(figures()).values()) == {"pass", "pending"}  # similarity: no embeddings compared
    assert verdict(figures()).action == "advance"
    assert verdict(figures(), last_step=True).action == "promote"


def test_a_step_waits_for_its_time_and_its_requests() -> None:
    waiting = verdict(figures(), elapsed_s=10.0)
    assert waiting.action == "wait" and "10/60 s" in waiting.reason
    assert verdict(figures(calls=30), min_requests=50).action == "wait"


@pytest.mark.parametrize(("step", "guard", "words"), [
    (figures(errors=10), "error_rate", "error rate 9.1% of 110 calls to version 2"),
    (figures(cand_s=0.050), "latency_p50", "latency_p50"),
    (figures(agreed=0.5), "agreement", "top-1 agreement 50.0%"),
    (figures(similar=0.2), "similarity", "mean cosine similarity 0.2"),
    (figures(cand_conf=0.4), "confidence", "50.0% below"),
])
def test_a_guard_that_trips_rolls_back_at_once_saying_why(step: StepFigures, guard: str, words: str) -> None:
    result = verdict(step, elapsed_s=1.0)  # long before the step could pass
    assert by_guard(step)[guard] == "trip"
    assert result.action == "rollback" and words in result.reason, result.reason


def test_guards_compare_with_the_baseline_and_allow_a_slack() -> None:
    both_slow = figures(base_s=0.5, cand_s=0.6)
    assert by_guard(both_slow)["latency_p50"] == "pass"  # a busy machine slows both
    tiny = figures(base_s=0.002, cand_s=0.010)  # 5x, but within the 20 ms slack
    assert by_guard(tiny)["latency_p50"] == "pass"
    assert by_guard(tiny, Guards(latency_slack_ms=0))["latency_p50"] == "trip"
    baseline_failing = figures(errors=5)
    baseline_failing.version(BASE).errors = 5
    assert by_guard(baseline_failing)["error_rate"] == "pass"  # the candidate fails no more than the baseline


def test_a_guard_judges_only_once_it_has_its_samples() -> None:
    few = figures(calls=5, errors=5)  # every call failed, but only 10 of them
    assert by_guard(few)["error_rate"] == "pending" and verdict(few).action == "wait"
    assert by_guard(few, Guards(min_samples=10))["error_rate"] == "trip"


def test_a_step_passes_only_on_evidence_that_the_outputs_agree() -> None:
    unseen = figures()
    unseen.agreement.top1_compared = unseen.agreement.top1_agreed = 0  # no comparison could be made
    assert verdict(unseen).action == "wait" and "agreement or similarity" in verdict(unseen).reason
    embeddings = figures(similar=0.99)
    embeddings.agreement.top1_compared = embeddings.agreement.top1_agreed = 0
    assert verdict(embeddings).action == "advance"


def test_thresholds_and_plans_are_validated() -> None:
    with pytest.raises(ValueError, match="max_error_rate"):
        Guards(max_error_rate=2.0)
    with pytest.raises(ValueError, match="ratios"):
        Guards(max_p99_ratio=0.5)
    for steps in ((), (10, 10), (50, 10), (0,), (100,), tuple(range(1, 13))):
        with pytest.raises(ValueError):
            RolloutPlan("canary", steps)
    with pytest.raises(ValueError, match="mode"):
        RolloutPlan("blue-green", (10,))
    plan = RolloutPlan("shadow", (5, 25), min_requests=7, guards=Guards(min_agreement=0.5))
    assert RolloutPlan.from_dict(plan.to_dict()) == plan
