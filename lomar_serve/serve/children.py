"""Roles run as child processes of `lomar serve` (the one-box fleet): started, restarted when they die, stopped
in order, never left behind.

    control = ChildProcess("control-plane", [sys.executable, "-m", "lomar_serve.cli", "control-plane"], env)
    control.start()
    ...
    control.stop()
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from lomar_serve.common.processes import die_with_parent

LOGGER = logging.getLogger(__name__)


class ChildProcess:
    """One child process, kept running by a thread of its own until stop()."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], *, restart_delay_s: float = 2.0,
                 stop_timeout_s: float = 30.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.restart_delay_s = restart_delay_s
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._process is None else self._process.pid

    def start(self) -> None:
        # The thread that forks the child must outlive it (PR_SET_PDEATHSIG fires when that thread exits).
        self._thread = threading.Thread(target=self._keep_running, name=f"lomar-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """SIGTERM the child, SIGKILL it after stop_timeout_s; no restart afterwards."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                LOGGER.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_timeout_s)
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(5.0)

    def _keep_running(self) -> None:
        parent = os.getpid()
        while not self._stopping.is_set():
            with self._lock:
                # Its own session: a Ctrl-C in the terminal reaches `lomar serve` only, which stops children in order.
                self._process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                                 start_new_session=True, preexec_fn=lambda: die_with_parent(parent))
                process = self._process
            LOGGER.info("%s started (pid %d)", self.name, process.pid)
            code = process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            LOGGER.error("%s exited with code %s; restarting it in %.0f s", self.name, code, self.restart_delay_s)
            self._stopping.wait(self.restart_delay_s)
