"""The rollout every gateway follows: which share of a model's requests a candidate version answers (canary) or also
receives to be compared with the serving version (shadow). Published by the control plane as REPO/NAME/.rollout.json
beside the model's config.pbtxt, where gateways already read what serves.

The lifecycle store holds each rollout's record (lomar_serve/jobs/rollouts.py); this file is derived from it: the
control plane writes the store first and the file after, and its reconcile loop publishes the file again wherever it
differs from the store (a control plane killed between the two writes, a file deleted by hand), so the file converges
on the store and never the other way round. While a rollout runs the control plane renews the file (touches its mtime)
every second or so. A gateway splits a model's traffic only while all of these hold:
- the published state is `running`;
- its baseline is the version config.pbtxt publishes: once a promotion has switched config.pbtxt to the candidate,
  a file still naming the old baseline is ignored, and every request goes to the new serving version;
- its mtime is within `lease_s` of now, in either direction (as for holds, common/holds.py): a control plane that
  died stops renewing it, and every gateway returns to the baseline within `lease_s` rather than carry on a canary
  that nobody watches. A control plane started again renews it and the rollout resumes.
Triton ignores the file (not a version folder).

    publish_rollout(repo / "lomar_classifier", PublishedRollout("3f2a...", "lomar_classifier", "canary", "1", "2",
                                                                step=0, percent=10.0, state="running", lease_s=30))
    rollout = read_rollout(repo / "lomar_classifier")        # None: no rollout was ever published for the model
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contracts.model_repository import ROLLOUT_FILE, is_version
from contracts.triton_config import write_atomic
from lomar_serve.common.holds import is_fresh

MODES = ("canary", "shadow")  # canary: the candidate answers `percent` of requests; shadow: it only sees them
PUBLISHED_STATES = ("running", "promoted", "rolled_back", "aborted")


class RolloutFileError(ValueError):
    """A .rollout.json that cannot be read as a published rollout."""


@dataclass(frozen=True)
class PublishedRollout:
    """One model's rollout as the gateways see it."""

    id: str
    model: str
    mode: str  # one of MODES
    baseline: str  # the serving version (config.pbtxt's) when the rollout began
    candidate: str  # the version tried
    step: int  # index of the current step of the rollout's plan
    percent: float  # share of the model's requests (those that pin no version) in the split, 0 < percent < 100
    state: str  # one of PUBLISHED_STATES
    lease_s: float  # a running rollout not renewed for this long is not followed

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.state not in PUBLISHED_STATES:
            raise RolloutFileError(f"mode {self.mode!r} / state {self.state!r}: expected one of {MODES} / "
                                   f"{PUBLISHED_STATES}")
        if not (is_version(self.baseline) and is_version(self.candidate)) or self.baseline == self.candidate:
            raise RolloutFileError(f"baseline {self.baseline!r} and candidate {self.candidate!r} must be two versions")
        if not 0.0 < float(self.percent) < 100.0 or float(self.lease_s) <= 0 or int(self.step) < 0:
            raise RolloutFileError(f"percent {self.percent} must be in (0, 100), lease_s {self.lease_s} positive, "
                                   f"step {self.step} not negative")

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PublishedRollout:
        try:
            values: dict[str, Any] = json.loads(text)
            return cls(id=str(values["id"]), model=str(values["model"]), mode=str(values["mode"]),
                       baseline=str(values["baseline"]), candidate=str(values["candidate"]), step=int(values["step"]),
                       percent=float(values["percent"]), state=str(values["state"]),
                       lease_s=float(values["lease_s"]))
        except (ValueError, KeyError, TypeError) as error:
            raise RolloutFileError(f"not a published rollout: {error}") from error

    def followed(self, serving: str | None, mtime: float, now: float | None = None) -> bool:
        """Whether a gateway splits traffic by this rollout: running, on the version that serves, renewed within
        lease_s of `now` (the file's `mtime`, either direction)."""
        return (self.running and self.baseline == serving
                and is_fresh(mtime, time.time() if now is None else now, self.lease_s))


def rollout_path(model_dir: Path) -> Path:
    return Path(model_dir) / ROLLOUT_FILE


def publish_rollout(model_dir: Path, rollout: PublishedRollout) -> bool:
    """Write REPO/NAME/.rollout.json atomically (a reader sees the old file or the new one); whether it changed. The
    mtime is renewed either way: a rollout published again is followed for another lease."""
    path = rollout_path(model_dir)
    text = rollout.to_json()
    try:
        changed = path.read_text() != text
    except OSError:
        changed = True
    write_atomic(path, text)
    if not changed:
        renew_rollout(model_dir)
    return changed


def renew_rollout(model_dir: Path) -> None:
    """Touch the published rollout: gateways follow it for another lease. OSError when it is missing."""
    os.utime(rollout_path(model_dir))


def read_rollout(model_dir: Path) -> PublishedRollout | None:
    """The published rollout of the model; None when none was published. Raises RolloutFileError (malformed) and
    OSError (unreadable)."""
    try:
        text = rollout_path(model_dir).read_text()
    except FileNotFoundError:
        return None
    return PublishedRollout.from_json(text)
