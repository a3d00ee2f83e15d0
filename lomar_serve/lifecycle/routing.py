"""The gateway's routing table: which version of each model it asks Triton for.

The inference path calls `serving_version(name)` on every request (a dictionary read, no I/O) and passes the
answer as `model_version` to Triton; None means Triton's own version policy. Deploys and rollbacks change an
entry only after the new version has loaded and answered a smoke inference (lomar_serve/lifecycle/deploy.py).
Entries are read from the lifecycle store at start-up, so routing survives restarts.
"""
from __future__ import annotations

import threading

from lomar_serve.lifecycle.store import LifecycleStore


class Routing:
    """Model name -> the version requests go to; safe to read from the event loop and any thread."""

    def __init__(self, store: LifecycleStore | None = None) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, str] = {}
        if store is not None:
            self._versions = {name: d.serving for name, d in store.deployments().items() if d.serving}

    def serving_version(self, name: str) -> str | None:
        return self._versions.get(name)

    def set(self, name: str, version: str) -> None:
        """Send `name`'s requests to `version` from now on."""
        with self._lock:
            self._versions = {**self._versions, name: version}

    def snapshot(self) -> dict[str, str]:
        return dict(self._versions)
