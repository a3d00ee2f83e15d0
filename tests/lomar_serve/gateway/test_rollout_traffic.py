"""A gateway's side of a rollout, without Triton: the split's share at every step, a canary call the candidate fails
answered by the baseline and counted, shadow calls only compared, agreement by label name, bounded background work,
and the reports written for the control plane. (The fleet tests run all of it on real Tritons.)"""
from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lomar_serve.common.rollout_figures import read_reports, total
from lomar_serve.common.rollouts import PublishedRollout
from lomar_serve.gateway.catalog import ModelSpec
from lomar_serve.gateway.errors import InferenceFailed, TritonUnavailable
from lomar_serve.gateway.inference import InferResult
from lomar_serve.gateway.metrics import GatewayMetrics
from lomar_serve.gateway.rollout_traffic import GuardRecorder, RolloutTraffic, Splitter

SPEC = ModelSpec(name="m", kind="classifier", version="1", image_size=(8, 8), max_batch_size=8,
                 labels=("cat", "dog", "bird"), embedding_dim=4)
ROLLOUT = PublishedRollout(id="r1", model="m", mode="canary", baseline="1", candidate="2", step=0, percent=20.0,
                           state="running", lease_s=30.0)
LABELS = {"1": ("cat", "dog", "bird"), "2": ("cat", "dog", "bird"), "3": ("dog", "bird", "cat")}  # 3: permuted


@pytest.mark.parametrize("percent", [5.0, 10.0, 33.3, 50.0, 90.0])
def test_the_split_is_within_one_request_of_its_share_at_every_point_of_a_step(percent: float) -> None:
    splitter = Splitter(random.Random(1))
    rollout = replace(ROLLOUT, percent=percent)
    taken = 0
    for count in range(1, 2001):
        taken += splitter.take(rollout)
        assert abs(taken - count * percent / 100) <= 1.0


def test_each_decision_of_the_split_is_random() -> None:
    def decisions(seed: int) -> list[bool]:
        splitter = Splitter(random.Random(seed))
        return [splitter.take(ROLLOUT) for _ in range(200)]

    assert decisions(1) != decisions(2)  # no fixed pattern: every fifth request would be one
    assert all(8 <= sum(decisions(seed)[i:i + 50]) <= 12 for seed in range(5) for i in (0, 50, 100, 150))


class Versions:
    """Triton's stand-in: each version's logits for the one test image; `failing` versions raise."""

    def __init__(self) -> None:
        self.logits = {"1": np.array([[3.0, 1.0, 0.0]]), "2": np.array([[3.0, 1.0, 0.0]])}
        self.failing: dict[str, Exception] = {}
        self.calls: list[tuple[str, str]] = []  # (version, role)
        self.delay_s = 0.0

    async def infer(self, spec: ModelSpec, inputs: dict, outputs: list[str], *, version: str | None = None,
                    role: str = "answer") -> InferResult:
        version = version or spec.version
        self.calls.append((version, role))
        await asyncio.sleep(self.delay_s)
        if version in self.failing:
            raise self.failing[version]
        return InferResult({"logits": self.logits[version].astype(np.float32)}, version)


def traffic(rollout: PublishedRollout | None, tmp_path: Path, **options: int) -> RolloutTraffic:
    recorder = GuardRecorder(tmp_path, GatewayMetrics(), gateway="gw-test", interval_s=0.01)
    return RolloutTraffic(lambda name: rollout, recorder, lambda spec, version: LABELS[version], **options)


async def serve(rollouts: RolloutTraffic, versions: Versions, count: int) -> list[str]:
    image = {"image": np.zeros((1, 3, 8, 8), np.uint8)}
    answered = [(await rollouts.answer(SPEC, image, ["logits"], versions.infer)).model_version for _ in range(count)]
    await asyncio.gather(*rollouts._comparisons)  # the background comparisons finish
    return answered


def test_no_rollout_every_request_to_the_serving_version(tmp_path: Path) -> None:
    versions = Versions()
    assert asyncio.run(serve(traffic(None, tmp_path), versions, 20)) == ["1"] * 20
    assert {role for _, role in versions.calls} == {"answer"}


def test_a_canary_answers_its_share_and_compares_each_answer_with_the_baseline(tmp_path: Path) -> None:
    versions = Versions()
    rollouts = traffic(ROLLOUT, tmp_path)
    answered = asyncio.run(serve(rollouts, versions, 100))
    assert abs(answered.count("2") - 20) <= 1
    figures = rollouts.recorder.figures(ROLLOUT)
    assert figures.version("2").calls == answered.count("2")
    assert figures.version("1").calls == 100  # 80 answers and one comparison per canary answer
    assert figures.agreement.top1_compared == figures.agreement.top1_agreed == answered.count("2")
    assert figures.agreement.confidence_drop == pytest.approx(0.0)


def test_a_candidate_that_fails_is_answered_by_the_baseline_and_counted(tmp_path: Path) -> None:
    versions = Versions()
    versions.failing["2"] = InferenceFailed("inference failed in Triton: boom")
    rollouts = traffic(ROLLOUT, tmp_path)
    assert asyncio.run(serve(rollouts, versions, 50)) == ["1"] * 50  # no client sees the candidate's error
    figures = rollouts.recorder.figures(ROLLOUT)
    assert abs(figures.version("2").errors - 10) <= 1 and figures.version("2").calls == 0
    versions.failing["2"] = TritonUnavailable("not loaded", retry_after_s=1)  # not loaded yet on this Triton
    assert asyncio.run(serve(rollouts, versions, 50)) == ["1"] * 50
    assert abs(figures.version("2").unavailable - 10) <= 1 and figures.version("2").error_rate == 1.0


def test_a_baseline_that_fails_fails_the_request_as_without_a_rollout(tmp_path: Path) -> None:
    versions = Versions()
    versions.failing["1"] = InferenceFailed("boom")
    with pytest.raises(InferenceFailed):
        asyncio.run(serve(traffic(replace(ROLLOUT, mode="shadow"), tmp_path), versions, 1))


def test_a_shadow_is_never_seen_by_clients_and_its_labels_are_compared_by_name(tmp_path: Path) -> None:
    versions = Versions()
    permuted = replace(ROLLOUT, mode="shadow", percent=50.0)
    versions.logits["3"] = versions.logits["2"]  # the same logits, the labels permuted
    rollouts = traffic(replace(permuted, candidate="3"), tmp_path)
    assert asyncio.run(serve(rollouts, versions, 40)) == ["1"] * 40
    assert sorted(set(versions.calls)) == [("1", "answer"), ("3", "compare")]
    figures = rollouts.recorder.figures(replace(permuted, candidate="3"))
    assert figures.agreement.top1_compared == 20 and figures.agreement.top1_agreed == 0


def test_background_comparisons_are_bounded_and_the_excess_counted(tmp_path: Path) -> None:
    versions = Versions()
    versions.delay_s = 0.05
    rollouts = traffic(replace(ROLLOUT, mode="shadow", percent=99.0), tmp_path, max_comparisons=2)

    async def burst() -> None:
        image = {"image": np.zeros((1, 3, 8, 8), np.uint8)}
        await asyncio.gather(*(rollouts.answer(SPEC, image, ["logits"], versions.infer) for _ in range(10)))
        assert len(rollouts._comparisons) <= 2
        await rollouts.close()

    asyncio.run(burst())
    assert rollouts.recorder.figures(replace(ROLLOUT, mode="shadow", percent=99.0)).agreement.skipped >= 7


def test_the_recorder_writes_this_gateways_report_of_the_current_step(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    versions = Versions()
    rollouts = traffic(ROLLOUT, tmp_path)

    async def run() -> None:
        writer = asyncio.create_task(rollouts.recorder.run())
        await serve(rollouts, versions, 30)
        await asyncio.sleep(0.2)
        writer.cancel()

    asyncio.run(run())
    reports = read_reports(tmp_path / "m")
    assert [(r.gateway, r.rollout, r.step) for r in reports] == [("gw-test", "r1", 0)]
    assert total(reports, "r1", 0).version("1").calls == 30
