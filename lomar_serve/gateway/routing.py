"""Where the gateway sends each model's requests: the serving version the shared model repository publishes.

The control plane publishes a deploy by rewriting REPO/NAME/config.pbtxt's version policy
(contracts/triton_config.py) after the new version is loaded and smoke-tested on every Triton. Each gateway
follows it: a thread re-reads the configs whose files changed every `interval_s`, and `serving_version(name)` -
called on every request - is a dictionary read. A gateway therefore switches within `interval_s` of the control
plane's switch, and keeps routing to the last version it read while the repository is unreachable.

A model may also have a canary or shadow rollout published beside its config (REPO/NAME/.rollout.json,
lomar_serve/common/rollouts.py), re-read in the same pass: `rollout(name)` is the one the gateway follows now (running,
on the serving version, its lease renewed), and gateway/rollout_traffic.py splits the requests by it.

Without a local repository (a gateway in front of a Triton whose repository it cannot see) nothing is routed and
Triton's own version policy applies.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from contracts.model_repository import CONFIG_FILE, is_model_name
from contracts.triton_config import read_serving_version
from lomar_serve.common.rollouts import PublishedRollout, RolloutFileError, read_rollout, rollout_path

LOGGER = logging.getLogger(__name__)
Switch = Callable[[str, str, str | None], None]  # (model, new version, old version or None)
FileStamp = tuple[int, int, int]  # (inode, size, mtime_ns): changes with every atomic replace


class PublishedRouting:
    """Model name -> the version requests go to; safe to read from the event loop and any thread."""

    def __init__(self, repository: Path | None, *, interval_s: float = 0.5, on_switch: Switch | None = None) -> None:
        self.repository = Path(repository) if repository is not None else None
        self.interval_s = interval_s
        self._on_switch = on_switch
        self._versions: dict[str, str] = {}
        self._stamps: dict[str, FileStamp] = {}
        self._rollouts: dict[str, tuple[PublishedRollout, float]] = {}  # model -> its rollout file, the file's mtime
        self._rollout_stamps: dict[str, FileStamp] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh(notify=False)

    def serving_version(self, name: str) -> str | None:
        return self._versions.get(name)

    def snapshot(self) -> dict[str, str]:
        return dict(self._versions)

    def rollout(self, name: str) -> PublishedRollout | None:
        """The rollout requests of `name` follow now: published running, on the serving version, and renewed
        within its lease (common/rollouts.py); None: every request to the serving version."""
        entry = self._rollouts.get(name)
        if entry is None or not entry[0].followed(self._versions.get(name), entry[1]):
            return None
        return entry[0]

    def refresh(self, notify: bool = True) -> list[tuple[str, str, str | None]]:
        """Re-read the configs that changed; returns the switches [(model, new, old)] (and reports them)."""
        if self.repository is None:
            return []
        try:
            names = [entry.name for entry in os.scandir(self.repository) if is_model_name(entry.name)]
        except OSError as error:
            LOGGER.warning("model repository %s unreadable (%s); routing unchanged", self.repository, error)
            return []
        versions = dict(self._versions)
        switches = []
        for name in names:
            try:
                info = os.stat(self.repository / name / CONFIG_FILE)
            except OSError:
                continue
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
            if self._stamps.get(name) == stamp:
                continue
            self._stamps[name] = stamp
            version = read_serving_version(self.repository / name)
            if version is None or versions.get(name) == version:
                continue
            switches.append((name, version, versions.get(name)))
            versions[name] = version
        self._versions = versions  # one assignment: readers see the old table or the new one
        self._refresh_rollouts(self.repository, names)
        for name, version, old in switches:
            if old is not None:
                LOGGER.info("%s now serves version %s (was %s)", name, version, old)
            if notify and self._on_switch is not None:
                self._on_switch(name, version, old)
        return switches

    def _refresh_rollouts(self, repository: Path, names: list[str]) -> None:
        """Re-read the rollout files that changed (a renewal changes the mtime); a malformed one is not followed."""
        rollouts = {}
        for name in names:
            path = rollout_path(repository / name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
            entry = self._rollouts.get(name)
            if self._rollout_stamps.get(name) == stamp:
                if entry is not None:
                    rollouts[name] = entry
                continue
            self._rollout_stamps[name] = stamp
            try:
                rollout = read_rollout(path.parent)
            except (OSError, RolloutFileError) as error:
                LOGGER.warning("rollout of %s not followed: %s is unreadable (%s)", name, path, error)
                continue
            if rollout is None:
                continue
            if entry is None or entry[0] != rollout:
                LOGGER.info("%s: %s of version %s against %s, %s at %g %%", name, rollout.mode, rollout.candidate,
                            rollout.baseline, rollout.state, rollout.percent)
            rollouts[name] = (rollout, info.st_mtime)
        self._rollouts = rollouts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="lomar-routing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _follow(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # the routing thread must outlive any single failure
                LOGGER.exception("re-reading the published versions failed")
