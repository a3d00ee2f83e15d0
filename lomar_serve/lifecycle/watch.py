"""Keep Triton serving the deployed versions across Triton restarts.

A restarted Triton (the supervisor restarts it when it dies) loads what config.pbtxt says, usually the newest
version, which may not be the deployed one (after a rollback, or when a job exported a version nobody deployed
yet). The watcher checks every few seconds that each routed version is READY and re-applies the deployments
when one is not, so requests routed to it work again within seconds of Triton coming back.
"""
from __future__ import annotations

import logging
import threading

from lomar_serve.lifecycle.deploy import Deployer
from lomar_serve.lifecycle.errors import DeployError

LOGGER = logging.getLogger(__name__)


class DeploymentWatcher:
    """A daemon thread that calls `deployer.restore()` when a routed version is not loaded."""

    def __init__(self, deployer: Deployer, interval_s: float = 2.0) -> None:
        self.deployer = deployer
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="lomar-deployments", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    def check_once(self) -> bool:
        """Restore if a routed version is missing from Triton; True when something was restored."""
        for name, version in self.deployer.routing.snapshot().items():
            try:
                loaded = self.deployer.ready_versions(name)
            except DeployError:
                return False  # Triton is down or restarting: check again later
            if version not in loaded:
                LOGGER.warning("%s version %s is routed but not loaded in Triton: restoring", name, version)
                return bool(self.deployer.restore())
        return False

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive any single failure
                LOGGER.exception("checking the deployed versions failed")
