"""The control plane's background loops (the job sweeper, the reconcile loop, the rollout guards) each run on a
daemon thread of their own until stopped: one way to start and stop them.

    loop = Background("lomar-job-sweeper", lambda stop: ... stop.wait(3.0) ...)
    loop.start()
    loop.stop()      # sets `stop`, then waits for the thread a while (it is a daemon: a step in flight may go on)
"""
from __future__ import annotations

import threading
from collections.abc import Callable

JOIN_TIMEOUT_S = 10.0


class Background:
    """`run(stop)` on a named daemon thread; `run` returns once the event `stop` is set."""

    def __init__(self, name: str, run: Callable[[threading.Event], None]) -> None:
        self.name = name
        self._run = run
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(target=self._run, args=(self.stopping,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
