"""Holds on a model version that a deploy has just switched away from, kept in the shared model repository.

A gateway whose image collections must be re-indexed after a switch still needs the old version to embed search
queries until the new index is complete (lomar_serve/search). It holds the old version with a file
REPO/NAME/.holds/VERSION/HOLDER that it touches every few seconds while the re-index runs and removes after; the
control plane waits for fresh holds (at most its hold limit) before it unloads the old version, and its reconciler
keeps a held version loaded. Triton ignores the folder (not a version number), every gateway and the control plane
already share the repository, and a holder that dies stops touching its file, so a stale hold never blocks a deploy
for long. Freshness is the distance between now and the file's mtime, in either direction: a holder whose clock runs
ahead of the control plane's (shared storage stamps mtimes with the writer's clock) writes mtimes in the future,
and such a hold must go stale like any other once its holder stops, not count as fresh until that future comes.

    with VersionHold(repository / "lomar_classifier", "3", holder="gw-a-1234"):
        ...                                              # re-index; version 3 stays loaded meanwhile
    active_holders(repository / "lomar_classifier", "3", fresh_s=15)   # -> ["gw-a-1234"] while held
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from contracts.model_repository import HOLDS_DIR

LOGGER = logging.getLogger(__name__)
TOUCH_INTERVAL_S = 3.0
FRESH_S = 15.0  # a hold not touched for this long is stale (its holder died)


def default_holder() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _hold_dir(model_dir: Path, version: str) -> Path:
    return Path(model_dir) / HOLDS_DIR / str(version)


class VersionHold:
    """Holds `version` of the model in `model_dir` while the `with` block runs (best effort: a read-only
    repository logs a warning and holds nothing)."""

    def __init__(self, model_dir: Path, version: str, holder: str | None = None) -> None:
        self.path = _hold_dir(model_dir, version) / (holder or default_holder())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> VersionHold:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as error:
            LOGGER.warning("cannot hold %s (%s): the old version may be unloaded before the re-index ends",
                           self.path, error)
            return self
        self._thread = threading.Thread(target=self._touch, name="lomar-hold", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is None:
            return  # nothing was held
        self._thread.join(5.0)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as failure:  # the repository went away or read-only meanwhile: the hold goes stale by itself
            LOGGER.warning("cannot release %s (%s)", self.path, failure)

    def _touch(self) -> None:
        while not self._stop.wait(TOUCH_INTERVAL_S):
            try:
                self.path.touch()
            except OSError:
                return


def is_fresh(mtime: float, now: float, fresh_s: float = FRESH_S) -> bool:
    """A hold stamped at `mtime` is fresh when `now` is within `fresh_s` of it, before or after (clock skew)."""
    return abs(now - mtime) <= fresh_s


def active_holders(model_dir: Path, version: str, fresh_s: float = FRESH_S) -> list[str]:
    """Holders of `version` whose hold was touched within `fresh_s`."""
    try:
        entries = list(_hold_dir(model_dir, version).iterdir())
    except OSError:
        return []
    now = time.time()
    holders = []
    for entry in entries:
        try:
            if is_fresh(entry.stat().st_mtime, now, fresh_s):
                holders.append(entry.name)
        except OSError:
            continue  # released meanwhile
    return sorted(holders)


def held_versions(model_dir: Path, fresh_s: float = FRESH_S) -> set[str]:
    """The versions of the model in `model_dir` that some holder holds now (fresh holds only)."""
    try:
        versions = [entry.name for entry in (Path(model_dir) / HOLDS_DIR).iterdir() if entry.is_dir()]
    except OSError:
        return set()
    return {version for version in versions if active_holders(model_dir, version, fresh_s)}
