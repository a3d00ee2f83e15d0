"""Keep a Triton server running: start it, watch it, restart it with backoff when it dies.

The supervisor owns one long-lived thread that starts every Triton process (the child's parent-death signal is
tied to the thread that forked it, so a short-lived thread must never start it; see server.py). Ports are picked
once, so the gateway's Triton URL stays valid across restarts.

    supervisor = TritonSupervisor(TritonServerConfig(model_repository=repo))
    supervisor.start()
    supervisor.wait_ready(timeout_s=120)      # True once Triton answers ready
    ... use supervisor.http_url ...
    supervisor.stop()                         # stops Triton, joins the thread; no orphans
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lomar_serve.triton.errors import TritonError
from lomar_serve.triton.server import TritonServer, TritonServerConfig, free_port

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor retries."""

    start_timeout_s: float = 120.0  # one start attempt, until /v2/health/ready
    poll_interval_s: float = 0.25  # how often the process is checked
    initial_backoff_s: float = 0.5  # wait before the first restart; doubles after each failure in a row
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0  # a server that ran this long resets the backoff
    max_restarts: int = 1000  # failures in a row before the supervisor gives up
    initial_attempts: int = 2  # a server that never came up is tried this often (a broken repository fails fast)
    stop_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if min(self.start_timeout_s, self.poll_interval_s, self.stop_timeout_s) <= 0:
            raise ValueError("timeouts and the poll interval must be positive")
        if not 0 <= self.initial_backoff_s <= self.max_backoff_s or self.max_restarts < 0 or self.initial_attempts < 1:
            raise ValueError(f"invalid restart policy {self}")


class TritonSupervisor:
    """Runs a TritonServer in a supervising thread and restarts it when it exits."""

    def __init__(self, config: TritonServerConfig, *, policy: RestartPolicy | None = None,
                 log_path: Path | None = None) -> None:
        """
        Args:
            config: the server to run; ports left at 0 are picked now and kept for every restart.
            policy: restart timing.
            log_path: Triton's log file (appended across restarts); None = a temporary file per start.
        """
        self.config = dataclasses.replace(
            config, http_port=config.http_port or free_port(config.host),
            grpc_port=config.grpc_port or free_port(config.host),
            metrics_port=config.metrics_port or free_port(config.host))
        self.policy = policy or RestartPolicy()
        self._log_path = log_path
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: TritonServer | None = None
        self._lock = threading.Lock()
        self.restarts = 0  # starts after the first one
        self.failure: str | None = None  # why the supervisor gave up, if it did

    # -- endpoints (stable across restarts) ------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The current Triton process, None between restarts."""
        with self._lock:
            server = self._server
        return server.pid if server is not None and server.is_alive() else None

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the supervising thread (it starts Triton); returns at once. Use wait_ready() to wait."""
        if self._thread is not None:
            raise TritonError("the supervisor was already started")
        self._thread = threading.Thread(target=self._run, name="triton-supervisor", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until Triton is up (True), the supervisor gave up or was stopped (False), or the timeout (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._ready.is_set():
            if self._done.is_set() or self._stop.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._ready.wait(0.1 if remaining is None else min(0.1, remaining))
        return True

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def is_running(self) -> bool:
        """The supervisor is still working (not stopped, not given up)."""
        return self._thread is not None and not self._done.is_set()

    def stop(self) -> None:
        """Stop Triton and the supervising thread. Idempotent."""
        self._stop.set()
        if not self._ready.is_set():
            with self._lock:
                server = self._server
            if server is not None:
                server.stop(self.policy.stop_timeout_s)  # abort a start in progress instead of waiting it out
        if self._thread is not None:
            self._thread.join(timeout=self.policy.stop_timeout_s + self.policy.start_timeout_s + 5.0)
            if self._thread.is_alive():
                LOGGER.error("the Triton supervisor thread did not finish")

    # -- the supervising thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.policy.initial_backoff_s
        failures = 0
        ever_ready = False
        try:
            while not self._stop.is_set():
                server = TritonServer(self.config, log_path=self._log_path)
                started = time.monotonic()
                try:
                    with self._lock:
                        self._server = server
                    server.start(self.policy.start_timeout_s)
                except TritonError as error:
                    LOGGER.error("Triton failed to start: %s", error)
                    server.stop(self.policy.stop_timeout_s)
                else:
                    ever_ready = True
                    self._ready.set()
                    self._watch(server)
                    self._ready.clear()
                    server_ran_s = time.monotonic() - started
                    server.stop(self.policy.stop_timeout_s)
                    if self._stop.is_set():
                        return
                    LOGGER.warning("Triton (%s) exited after %.0f s", self.http_url, server_ran_s)
                    if server_ran_s >= self.policy.stable_after_s:
                        backoff, failures = self.policy.initial_backoff_s, 0
                failures += 1
                limit = self.policy.max_restarts if ever_ready else self.policy.initial_attempts - 1
                if failures > limit:
                    self.failure = f"Triton failed {failures} time(s) in a row; giving up (errors above)"
                    LOGGER.error(self.failure)
                    return
                LOGGER.info("restarting Triton in %.1f s", backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(self.policy.max_backoff_s, max(backoff * 2, 0.1))
                self.restarts += 1
        finally:
            with self._lock:
                server, self._server = self._server, None
            if server is not None:
                server.stop(self.policy.stop_timeout_s)
            self._ready.clear()
            self._done.set()

    def _watch(self, server: TritonServer) -> None:
        """Return when the server exits or the supervisor is told to stop."""
        while server.is_alive() and not self._stop.wait(self.policy.poll_interval_s):
            pass
