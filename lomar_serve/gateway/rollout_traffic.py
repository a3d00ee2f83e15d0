"""How a gateway splits a model's requests by the rollout it follows (REPO/NAME/.rollout.json, common/rollouts.py;
read by routing.py), and what it measures of them for the control plane's guards (common/rollout_figures.py).

Requests that pin a version (`?version=`) are not part of a split. Of the others:
- canary at P %: P % of them are answered by the candidate. One the candidate fails (a Triton error, a timeout) or
  cannot take (not loaded on this Triton yet) is answered by the baseline instead, so clients see the candidate's
  errors as the baseline's answers and the guard counts them; each one it answers is compared with the baseline's
  answer to the same images, asked in the background;
- shadow at P %: every request is answered by the baseline, and P % of them are also sent to the candidate in the
  background, only to compare its answers.
Which requests are in the P % is decided by `Splitter`: each decision random, yet the count of one step never more
than one request away from P % of them, so that every gateway's share is P % within a request.
Background comparisons are bounded (`max_comparisons` in flight; more are skipped and counted): shadow traffic never
queues up behind a slow candidate. `GuardRecorder` keeps the figures of the current step of each followed rollout
and writes them as this gateway's report every `interval_s`.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from lomar_serve.common.holds import default_holder
from lomar_serve.common.rollout_figures import GuardReport, StepFigures, write_report
from lomar_serve.common.rollouts import PublishedRollout
from lomar_serve.gateway.agreement import Comparison, compare, top1_confidence
from lomar_serve.gateway.catalog import ModelSpec
from lomar_serve.gateway.errors import InferenceFailed, ModelNotFound, TritonTimeout, TritonUnavailable
from lomar_serve.gateway.inference import InferResult
from lomar_serve.gateway.metrics import GatewayMetrics

LOGGER = logging.getLogger(__name__)
FAILURES = (InferenceFailed, TritonTimeout)  # the version's fault: counted against it
REFUSALS = (TritonUnavailable, ModelNotFound)  # the version is not loaded on this Triton: not its fault
Infer = Callable[..., Awaitable[InferResult]]  # Gateway._infer(spec, inputs, outputs, *, version=, role=)
LabelsOf = Callable[[ModelSpec, str], Sequence[str]]  # (spec, version) -> that version's labels


class Splitter:
    """Decides which requests of a rollout's step are in its P %.

    A credit grows by P/100 per request; a request is in when the credit reaches a fresh uniform draw in [0, 1), and
    then costs 1. Between requests the credit stays in [-1, 1), so after n requests of a step the count in is within
    one of n * P / 100, while each decision is random (no pattern a client's own periodic traffic could line up
    with)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._credit: dict[str, tuple[tuple[str, int], float]] = {}  # model -> ((rollout, step), credit)

    def take(self, rollout: PublishedRollout) -> bool:
        key = (rollout.id, rollout.step)
        kept = self._credit.get(rollout.model)
        credit = (kept[1] if kept is not None and kept[0] == key else 0.0) + rollout.percent / 100.0
        chosen = credit >= self._rng.random()
        self._credit[rollout.model] = (key, credit - 1.0 if chosen else credit)
        return chosen


class GuardRecorder:
    """The figures of the current step of every rollout this gateway follows, reported to the control plane."""

    def __init__(self, repository: Path | None, metrics: GatewayMetrics, *, gateway: str | None = None,
                 interval_s: float = 1.0) -> None:
        self.repository = repository
        self.metrics = metrics
        self.gateway = gateway or default_holder()
        self.interval_s = interval_s
        self._steps: dict[str, tuple[tuple[str, int], StepFigures]] = {}  # model -> ((rollout, step), figures)
        self._changed: set[str] = set()
        self._unwritable: set[str] = set()  # models whose report could not be written (logged once)

    def figures(self, rollout: PublishedRollout) -> StepFigures:
        """The figures of the rollout's current step (new ones when the step or the rollout changed)."""
        key = (rollout.id, rollout.step)
        entry = self._steps.get(rollout.model)
        if entry is None or entry[0] != key:
            entry = (key, StepFigures())
            self._steps[rollout.model] = entry
        self._changed.add(rollout.model)
        return entry[1]

    def answered(self, rollout: PublishedRollout, version: str, seconds: float, result: InferResult) -> None:
        logits = result.outputs.get("logits")
        confidences = top1_confidence(logits) if logits is not None else ()
        self.figures(rollout).version(version).observe(seconds, confidences)

    def failed(self, rollout: PublishedRollout, version: str) -> None:
        self.figures(rollout).version(version).errors += 1

    def refused(self, rollout: PublishedRollout, version: str) -> None:
        self.figures(rollout).version(version).unavailable += 1

    def skipped(self, rollout: PublishedRollout) -> None:
        self.figures(rollout).agreement.skipped += 1

    def compared(self, rollout: PublishedRollout, comparison: Comparison) -> None:
        agreement = self.figures(rollout).agreement
        agreement.top1_compared += comparison.top1_compared
        agreement.top1_agreed += comparison.top1_agreed
        agreement.confidence_baseline += comparison.confidence_baseline
        agreement.confidence_candidate += comparison.confidence_candidate
        agreement.similarity_count += len(comparison.similarities)
        agreement.similarity_sum += sum(comparison.similarities)
        if comparison.top1_compared:
            counter = self.metrics.rollout_comparisons
            counter.labels(rollout.model, rollout.candidate, "agree").inc(comparison.top1_agreed)
            counter.labels(rollout.model, rollout.candidate, "disagree").inc(
                comparison.top1_compared - comparison.top1_agreed)
        for similarity in comparison.similarities:
            self.metrics.rollout_similarity.labels(rollout.model, rollout.candidate).observe(similarity)

    async def run(self) -> None:
        """Write the reports of the steps whose figures changed, every interval, until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            if self.repository is None or not self._changed:
                continue
            reports = [(self.repository / model, GuardReport(self.gateway, key[0], key[1],
                                                             StepFigures.from_dict(figures.to_dict())))
                       for model, (key, figures) in self._steps.items() if model in self._changed]
            self._changed.clear()
            await asyncio.to_thread(self._write, reports)

    def _write(self, reports: list[tuple[Path, GuardReport]]) -> None:
        for model_dir, report in reports:
            try:
                write_report(model_dir, report)
                self._unwritable.discard(model_dir.name)
            except OSError as error:
                if model_dir.name not in self._unwritable:
                    LOGGER.warning("guard report of %s not written (%s): the control plane does not see this "
                                   "gateway's figures", model_dir.name, error)
                    self._unwritable.add(model_dir.name)


class RolloutTraffic:
    """Answers a model's requests as the rollout it follows says (none: the serving version answers)."""

    def __init__(self, rollout_for: Callable[[str], PublishedRollout | None], recorder: GuardRecorder,
                 labels_of: LabelsOf, *, max_comparisons: int = 16, splitter: Splitter | None = None) -> None:
        self.rollout_for = rollout_for
        self.recorder = recorder
        self.labels_of = labels_of
        self.max_comparisons = max_comparisons
        self.splitter = splitter or Splitter()
        self._comparisons: set[asyncio.Task[None]] = set()

    async def answer(self, spec: ModelSpec, inputs: dict[str, np.ndarray], outputs: list[str],
                     infer: Infer) -> InferResult:
        rollout = self.rollout_for(spec.name)
        if rollout is None:
            return await infer(spec, inputs, outputs)
        chosen = self.splitter.take(rollout)
        if rollout.mode == "canary" and chosen:
            try:
                result = await self._call(rollout, rollout.candidate, spec, inputs, outputs, infer, "answer")
            except FAILURES + REFUSALS:
                return await self._call(rollout, rollout.baseline, spec, inputs, outputs, infer, "answer")
            self._compare_later(rollout, spec, inputs, outputs, infer, result, rollout.baseline)
            return result
        result = await self._call(rollout, rollout.baseline, spec, inputs, outputs, infer, "answer")
        if chosen:  # shadow
            self._compare_later(rollout, spec, inputs, outputs, infer, result, rollout.candidate)
        return result

    async def close(self) -> None:
        for task in list(self._comparisons):
            task.cancel()
        await asyncio.gather(*self._comparisons, return_exceptions=True)

    async def _call(self, rollout: PublishedRollout, version: str, spec: ModelSpec, inputs: dict[str, np.ndarray],
                    outputs: list[str], infer: Infer, role: str) -> InferResult:
        start = time.perf_counter()
        try:
            result = await infer(spec, inputs, outputs, version=version, role=role)
        except FAILURES:
            self.recorder.failed(rollout, version)
            raise
        except REFUSALS:
            self.recorder.refused(rollout, version)
            raise
        self.recorder.answered(rollout, version, time.perf_counter() - start, result)
        return result

    def _compare_later(self, rollout: PublishedRollout, spec: ModelSpec, inputs: dict[str, np.ndarray],
                       outputs: list[str], infer: Infer, answered: InferResult, other: str) -> None:
        if len(self._comparisons) >= self.max_comparisons:
            self.recorder.skipped(rollout)
            return
        task = asyncio.create_task(self._compare(rollout, spec, inputs, outputs, infer, answered, other))
        self._comparisons.add(task)
        task.add_done_callback(self._comparisons.discard)

    async def _compare(self, rollout: PublishedRollout, spec: ModelSpec, inputs: dict[str, np.ndarray],
                       outputs: list[str], infer: Infer, answered: InferResult, other: str) -> None:
        try:
            second = await self._call(rollout, other, spec, inputs, outputs, infer, "compare")
        except FAILURES + REFUSALS:
            return  # counted by _call
        except Exception:  # a background task must not end with an unseen error
            LOGGER.exception("comparing %s version %s failed", spec.name, other)
            return
        baseline, candidate = (answered, second) if other == rollout.candidate else (second, answered)
        base_labels = self.labels_of(spec, rollout.baseline)
        cand_labels = self.labels_of(spec, rollout.candidate)
        for name in outputs:
            self.recorder.compared(rollout, compare(name, baseline.outputs[name], candidate.outputs[name],
                                                    base_labels, cand_labels))
