"""The rollout file gateways follow (common/rollouts.py: published, renewed, read, its lease) and the guard figures
they report (common/rollout_figures.py: counts that add up across gateways, percentiles from summed buckets)."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lomar_serve.common.rollout_figures import (GuardReport, StepFigures, VersionFigures, clear_reports, read_reports,
                                                 reports_dir, total, write_report)
from lomar_serve.common.rollouts import PublishedRollout, RolloutFileError, publish_rollout, read_rollout, rollout_path

ROLLOUT = PublishedRollout(id="r1", model="m", mode="canary", baseline="1", candidate="2", step=0, percent=10.0,
                           state="running", lease_s=30.0)


def test_a_published_rollout_reads_back_and_is_renewed_when_published_again(tmp_path: Path) -> None:
    assert read_rollout(tmp_path) is None
    assert publish_rollout(tmp_path, ROLLOUT) is True
    assert read_rollout(tmp_path) == ROLLOUT
    os.utime(rollout_path(tmp_path), (0, 0))
    assert publish_rollout(tmp_path, ROLLOUT) is False  # unchanged, but renewed
    assert abs(rollout_path(tmp_path).stat().st_mtime - time.time()) < 5
    assert publish_rollout(tmp_path, replace(ROLLOUT, step=1, percent=50.0)) is True
    rollout_path(tmp_path).write_text('{"id": "r1"}')
    with pytest.raises(RolloutFileError):
        read_rollout(tmp_path)
    with pytest.raises(RolloutFileError):
        replace(ROLLOUT, candidate="1")
    with pytest.raises(RolloutFileError):
        replace(ROLLOUT, percent=100.0)


def test_a_gateway_follows_a_rollout_only_while_running_on_the_serving_version_within_its_lease() -> None:
    now = time.time()
    assert ROLLOUT.followed("1", now - 29, now)
    assert not ROLLOUT.followed("1", now - 31, now)  # the control plane stopped renewing it
    assert not ROLLOUT.followed("1", now + 31, now)  # a clock far ahead does not keep it alive
    assert not ROLLOUT.followed("2", now, now)  # promoted: config.pbtxt serves the candidate
    assert not replace(ROLLOUT, state="rolled_back").followed("1", now, now)


def test_latency_percentiles_come_from_buckets_that_add_up_across_gateways() -> None:
    rng = np.random.default_rng(0)
    samples = rng.lognormal(np.log(0.02), 0.5, 4000)
    halves = [VersionFigures(), VersionFigures()]
    for index, seconds in enumerate(samples):
        halves[index % 2].observe(float(seconds))
    summed = VersionFigures()
    for half in halves:
        summed.add(half)
    assert summed.calls == 4000
    for q in (0.5, 0.99):
        assert summed.quantile(q) == pytest.approx(float(np.quantile(samples, q)), rel=0.1)
    slow = VersionFigures()
    slow.observe(1000.0)  # past the last bucket
    assert slow.quantile(0.5) == pytest.approx(56.3, rel=0.01) and VersionFigures().quantile(0.5) is None


def test_reports_are_summed_for_one_step_of_one_rollout(tmp_path: Path) -> None:
    def report(gateway: str, rollout: str, step: int, calls: int) -> GuardReport:
        figures = StepFigures()
        for _ in range(calls):
            figures.version("2").observe(0.01, [0.75])
        figures.agreement.top1_compared, figures.agreement.top1_agreed = calls, calls - 1
        return GuardReport(gateway, rollout, step, figures)

    for args in (("gw-a", "r1", 1, 3), ("gw-b", "r1", 1, 4), ("gw-c", "r1", 0, 50), ("gw-d", "r0", 1, 50)):
        write_report(tmp_path, report(*args))
    (reports_dir(tmp_path) / "torn.json").write_text("{")  # never written so, but never trusted either
    reports = read_reports(tmp_path)
    assert sorted(r.gateway for r in reports) == ["gw-a", "gw-b", "gw-c", "gw-d"]
    step = total(reports, "r1", 1)
    assert step.version("2").calls == 7 and step.agreement.top1_agreed == 5
    assert step.summary()["versions"]["2"]["mean_confidence"] == 0.75
    assert GuardReport.from_json(reports[0].to_json()) == reports[0]
    clear_reports(tmp_path)
    assert read_reports(tmp_path) == []
