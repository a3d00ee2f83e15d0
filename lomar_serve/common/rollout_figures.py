"""Guard figures of a rollout: what each gateway measures of the two versions at one step of a rollout, written about
every second to REPO/NAME/.rollout/GATEWAY.json, and summed by the control plane over every gateway's report
(lomar_serve/jobs/guards.py judges the sum).

Every figure is a count or a sum, so the reports of several gateways add up exactly: latencies are counted in fixed
buckets (LATENCY_BUCKETS_S) and percentiles are read from the summed buckets - a percentile of percentiles would mean
nothing. A report is cumulative for its (rollout, step); a gateway starts new figures when the step changes, and the
control plane adds only the reports of the current step. Reports of a gateway that stopped stay valid (the requests
happened); the control plane clears the folder when a rollout begins.

    figures = StepFigures()
    figures.version("2").observe(0.012, confidences=[0.91])
    write_report(repo / "lomar_classifier", GuardReport("gw-a-1234", "3f2a...", 0, figures))
    total(read_reports(repo / "lomar_classifier"), "3f2a...", 0).version("2").calls      # -> 1
"""
from __future__ import annotations

import bisect
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.model_repository import ROLLOUT_REPORTS_DIR
from contracts.triton_config import write_atomic

LOGGER = logging.getLogger(__name__)
# Upper bounds of the latency buckets: 1 ms to 56 s, each 20 % wider than the one before (a percentile read from
# them is within 10 % of the true one); one more bucket counts what is slower.
LATENCY_BUCKETS_S = tuple(0.001 * 1.2 ** i for i in range(61))
CONFIDENCE_BINS = 10  # the top-1 probability of classifier answers, in tenths


def _zeros(count: int) -> list[int]:
    return [0] * count


@dataclass
class VersionFigures:
    """What one version did at one step, as one gateway (or the sum of several) saw it."""

    calls: int = 0  # Triton calls the version answered
    errors: int = 0  # calls the version failed (Triton's error, a timeout)
    unavailable: int = 0  # calls refused because the version was not loaded on that Triton (not counted against it)
    latency: list[int] = field(default_factory=lambda: _zeros(len(LATENCY_BUCKETS_S) + 1))  # answered calls
    confidence: list[int] = field(default_factory=lambda: _zeros(CONFIDENCE_BINS))  # classifier answers, per image
    confidence_sum: float = 0.0

    def observe(self, seconds: float, confidences: Iterable[float] = ()) -> None:
        """One answered call that took `seconds`; `confidences`: the top-1 probability of each image (classifiers)."""
        self.calls += 1
        self.latency[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        for value in confidences:
            self.confidence[min(int(value * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)] += 1
            self.confidence_sum += float(value)

    @property
    def requests(self) -> int:
        """Calls the version answered or failed (refusals of an unloaded version aside)."""
        return self.calls + self.errors

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def mean_confidence(self) -> float | None:
        count = sum(self.confidence)
        return self.confidence_sum / count if count else None

    def quantile(self, q: float) -> float | None:
        """The latency (seconds) below which a fraction `q` of the answered calls fall; None without any. Linear
        within the bucket it falls in; the open last bucket answers its lower bound."""
        total = sum(self.latency)
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.latency):
            if count and seen + count >= rank:
                low = LATENCY_BUCKETS_S[index - 1] if index > 0 else 0.0
                if index == len(LATENCY_BUCKETS_S):
                    return low
                return low + (LATENCY_BUCKETS_S[index] - low) * max(rank - seen, 0.0) / count
            seen += count
        return LATENCY_BUCKETS_S[-1]

    def add(self, other: VersionFigures) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.unavailable += other.unavailable
        self.latency = [a + b for a, b in zip(self.latency, other.latency)]
        self.confidence = [a + b for a, b in zip(self.confidence, other.confidence)]
        self.confidence_sum += other.confidence_sum

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "unavailable": self.unavailable,
                "latency": list(self.latency), "confidence": list(self.confidence),
                "confidence_sum": self.confidence_sum}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VersionFigures:
        figures = cls(calls=int(values["calls"]), errors=int(values["errors"]),
                      unavailable=int(values["unavailable"]), confidence_sum=float(values["confidence_sum"]))
        latency, confidence = [int(v) for v in values["latency"]], [int(v) for v in values["confidence"]]
        if len(latency) != len(figures.latency) or len(confidence) != len(figures.confidence):
            raise ValueError("latency or confidence counts of another length than this version's buckets")
        figures.latency, figures.confidence = latency, confidence
        return figures


@dataclass
class Agreement:
    """The candidate's answers compared with the baseline's on the same images (shadowed and canaried requests)."""

    top1_compared: int = 0  # classifier images answered by both
    top1_agreed: int = 0  # ... whose top-1 labels are the same label
    confidence_baseline: float = 0.0  # sums of the top-1 probability of those images, per version
    confidence_candidate: float = 0.0
    similarity_count: int = 0  # images of other outputs (embeddings, reconstructions) answered by both
    similarity_sum: float = 0.0  # ... the sum of the cosine similarities of their outputs
    skipped: int = 0  # comparisons not made: too many in flight on the gateway

    @property
    def top1(self) -> float | None:
        return self.top1_agreed / self.top1_compared if self.top1_compared else None

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.similarity_count if self.similarity_count else None

    @property
    def confidence_drop(self) -> float | None:
        """Mean top-1 probability of the baseline minus the candidate's, on the same images."""
        if not self.top1_compared:
            return None
        return (self.confidence_baseline - self.confidence_candidate) / self.top1_compared

    def add(self, other: Agreement) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Agreement:
        return cls(**{name: type(default)(values[name]) for name, default in cls().to_dict().items()})


@dataclass
class StepFigures:
    """Every version's figures and the agreement at one step of a rollout."""

    versions: dict[str, VersionFigures] = field(default_factory=dict)
    agreement: Agreement = field(default_factory=Agreement)

    def version(self, version: str) -> VersionFigures:
        """The figures of `version` (new, empty ones if it has none yet)."""
        return self.versions.setdefault(version, VersionFigures())

    def add(self, other: StepFigures) -> None:
        for version, figures in other.versions.items():
            self.version(version).add(figures)
        self.agreement.add(other.agreement)

    def to_dict(self) -> dict[str, Any]:
        return {"versions": {v: f.to_dict() for v, f in self.versions.items()},
                "agreement": self.agreement.to_dict()}

    def summary(self) -> dict[str, Any]:
        """The figures as people read them: per version calls, errors, error rate, p50/p99 (ms), mean confidence;
        the agreement's top-1 share, mean similarity and confidence drop."""
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 2)

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        versions = {version: {"calls": f.calls, "errors": f.errors, "unavailable": f.unavailable,
                              "error_rate": rounded(f.error_rate), "p50_ms": ms(f.quantile(0.5)),
                              "p99_ms": ms(f.quantile(0.99)), "mean_confidence": rounded(f.mean_confidence)}
                    for version, f in sorted(self.versions.items(), key=lambda item: int(item[0]))}
        a = self.agreement
        return {"versions": versions, "agreement": {
            "top1": rounded(a.top1), "top1_compared": a.top1_compared, "similarity": rounded(a.similarity),
            "similarity_compared": a.similarity_count, "confidence_drop": rounded(a.confidence_drop),
            "skipped": a.skipped}}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StepFigures:
        return cls({str(v): VersionFigures.from_dict(f) for v, f in values["versions"].items()},
                   Agreement.from_dict(values["agreement"]))


@dataclass(frozen=True)
class GuardReport:
    """One gateway's figures of one step of one rollout (cumulative since the gateway saw the step begin)."""

    gateway: str
    rollout: str
    step: int
    figures: StepFigures

    def to_json(self) -> str:
        return json.dumps({"gateway": self.gateway, "rollout": self.rollout, "step": self.step,
                           "figures": self.figures.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> GuardReport:
        values = json.loads(text)
        return cls(str(values["gateway"]), str(values["rollout"]), int(values["step"]),
                   StepFigures.from_dict(values["figures"]))


def reports_dir(model_dir: Path) -> Path:
    return Path(model_dir) / ROLLOUT_REPORTS_DIR


def write_report(model_dir: Path, report: GuardReport) -> None:
    """Replace the gateway's report atomically (the control plane reads whole reports only). Raises OSError."""
    folder = reports_dir(model_dir)
    folder.mkdir(exist_ok=True)
    write_atomic(folder / f"{report.gateway}.json", report.to_json())


def read_reports(model_dir: Path) -> list[GuardReport]:
    """Every gateway's report of the model; unreadable or malformed ones are skipped (logged)."""
    try:
        paths = sorted(path for path in reports_dir(model_dir).iterdir() if path.suffix == ".json")
    except OSError:
        return []
    reports = []
    for path in paths:
        try:
            reports.append(GuardReport.from_json(path.read_text()))
        except FileNotFoundError:
            continue  # replaced or cleared meanwhile
        except (OSError, ValueError, KeyError, TypeError) as error:
            LOGGER.warning("guard report %s skipped: %s", path, error)
    return reports


def clear_reports(model_dir: Path) -> None:
    """Remove every report of the model (those of earlier rollouts), before a rollout begins."""
    shutil.rmtree(reports_dir(model_dir), ignore_errors=True)


def total(reports: Iterable[GuardReport], rollout: str, step: int) -> StepFigures:
    """The sum of the reports of `rollout` at `step` (those of other rollouts and steps are left out)."""
    figures = StepFigures()
    for report in reports:
        if report.rollout == rollout and report.step == step:
            figures.add(report.figures)
    return figures
