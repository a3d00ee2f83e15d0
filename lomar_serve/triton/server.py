"""Launch the real Triton server binary that nvidia-pytriton bundles, on a model repository.

    config = TritonServerConfig(model_repository=Path("model_repository"))
    with TritonServer(config) as server:          # starts and waits for /v2/health/ready
        client = tritonclient.http.InferenceServerClient(server.http_url)

The child process runs in its own process group (a Ctrl-C in the terminal reaches the parent only, which stops
Triton in order) and gets SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG). Note that the kernel sends that
signal when the *thread* that started the child exits: start the server from the main thread or another
long-lived thread, never from a short-lived worker thread. All ports bind to 127.0.0.1 by default: Triton is never
the public surface (its HTTP endpoint is known to crash on large JSON tensors).
"""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lomar_serve.common.processes import die_with_parent
from lomar_serve.common.settings import child_environment
from lomar_serve.triton.distribution import find_distribution, prepare_backend_directory
from lomar_serve.triton.errors import TritonError, TritonStartError

LOGGER = logging.getLogger(__name__)
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
LOG_TAIL_CHARS = 1500
ERROR_LINE = re.compile(r"^(E\d{4} |error:|Error:)")
PORT_RETRIES = 3  # fresh free ports are picked again when a picked port was taken in the meantime


@dataclass(frozen=True)
class TritonServerConfig:
    """What the server serves and where it listens. Ports set to 0 are picked free at each start."""

    model_repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    host: str = "127.0.0.1"  # address every endpoint binds to
    model_control_mode: str = "explicit"  # "explicit": load/unload through the repository API
    load_models: tuple[str, ...] = ()  # models loaded at start in explicit mode; empty = every model found
    strict_readiness: bool = True  # ready only when every loaded model is ready
    exit_on_error: bool = True  # a model that fails to load at start stops the server (start() reports it)
    # How long Triton waits, when asked to stop, for in-flight requests and open client connections (idle
    # keep-alive connections count: close clients before stop()). Keep it below stop()'s timeout.
    exit_timeout_s: int = 5
    log_verbose: int = 0
    allow_metrics: bool = True
    backend_config: tuple[str, ...] = ()  # "--backend-config" values, e.g. "python,shm-default-byte-size=..."
    backend_cache_dir: Path | None = None  # where the Python backend directory is assembled; None = default

    def __post_init__(self) -> None:
        if self.model_control_mode not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control_mode must be one of {MODEL_CONTROL_MODES}, "
                             f"got {self.model_control_mode!r}")
        if self.load_models and self.model_control_mode != "explicit":
            raise ValueError("load_models needs model_control_mode='explicit'")
        for name, port in (("http_port", self.http_port), ("grpc_port", self.grpc_port),
                           ("metrics_port", self.metrics_port)):
            if not 0 <= port < 65536:
                raise ValueError(f"{name} must be in 0..65535, got {port}")
        if self.exit_timeout_s < 0:
            raise ValueError("exit_timeout_s must be >= 0")

    def to_args(self, backend_directory: Path, ports: tuple[int, int, int]) -> list[str]:
        """Command-line flags for the binary, with the given (http, grpc, metrics) ports."""
        http, grpc, metrics = ports
        args = [
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_directory}",
            f"--model-control-mode={self.model_control_mode}",
            f"--http-address={self.host}", f"--http-port={http}",
            f"--grpc-address={self.host}", f"--grpc-port={grpc}",
            f"--allow-metrics={str(self.allow_metrics).lower()}",
            f"--strict-readiness={str(self.strict_readiness).lower()}",
            f"--exit-on-error={str(self.exit_on_error).lower()}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.allow_metrics:
            args += [f"--metrics-address={self.host}", f"--metrics-port={metrics}"]
        if self.model_control_mode == "explicit":
            args += [f"--load-model={name}" for name in (self.load_models or ("*",))]
        args += [f"--backend-config={value}" for value in self.backend_config]
        return args


def free_port(host: str) -> int:
    """A port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TritonServer:
    """One Triton server process: start, wait until ready, stop (SIGINT, then SIGKILL)."""

    def __init__(self, config: TritonServerConfig, *, log_path: Path | None = None) -> None:
        """
        Args:
            config: what to serve and where.
            log_path: file the server's stdout and stderr go to (appended). None: a temporary file, removed by
                stop() unless the start failed.
        """
        self.config = config
        self._log_path = log_path
        self._own_log = log_path is None
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: tuple[int, int, int] | None = None
        self._lock = threading.Lock()  # stop() may come from another thread while start() waits
        self._stop_requested = False

    # -- endpoints -------------------------------------------------------------------------------------------
    def _port(self, index: int) -> int:
        if self._ports is None:
            raise TritonError("the server has not been started")
        return self._ports[index]

    @property
    def http_url(self) -> str:
        """"host:port" of the HTTP/REST endpoint, as tritonclient.http expects it."""
        return f"{self.config.host}:{self._port(0)}"

    @property
    def grpc_url(self) -> str:
        """"host:port" of the gRPC endpoint, as tritonclient.grpc expects it."""
        return f"{self.config.host}:{self._port(1)}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics page."""
        if not self.config.allow_metrics:
            raise TritonError("metrics are disabled in this server's config")
        return f"http://{self.config.host}:{self._port(2)}/metrics"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The last `chars` characters of the server's log."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as log:
            log.seek(max(0, self._log_path.stat().st_size - chars))
            return log.read().decode("utf-8", errors="replace")

    def failure_report(self) -> str:
        """Triton's error lines (the model load errors hide before its long option table), then the log tail."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if ERROR_LINE.match(line)][-10:]
        return "errors:\n" + "\n".join(errors) + f"\nlog tail ({self._log_path}):\n" + self.log_tail()

    # -- life cycle ------------------------------------------------------------------------------------------
    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 120.0) -> None:
        """Launch the server and return once /v2/health/ready answers 200.

        Raises:
            TritonStartError: the process exited or was not ready within `timeout_s` (message has the log tail).
            TritonNotFoundError: the bundled binary is missing.
        """
        if self.is_alive():
            raise TritonError(f"the server is already running (pid {self.pid})")
        if not Path(self.config.model_repository).is_dir():
            raise TritonStartError(f"model repository {self.config.model_repository} is not a directory")
        dist = find_distribution()
        backend_dir = prepare_backend_directory(dist, self.config.backend_cache_dir)
        env = self._environment(dist.libs)
        deadline = time.monotonic() + timeout_s
        self._stop_requested = False
        for attempt in range(PORT_RETRIES):
            self._ports = self._pick_ports()
            process = self._launch([str(dist.binary), *self.config.to_args(backend_dir, self._ports)], env)
            try:
                self._wait_ready(process, deadline)
                LOGGER.info("Triton ready: pid %d, http %s, grpc %s", self.pid, self.http_url, self.grpc_url)
                return
            except TritonStartError:
                self._terminate(timeout_s=5.0)
                if attempt + 1 < PORT_RETRIES and not self._stop_requested and self._port_clash():
                    LOGGER.warning("a picked port was taken meanwhile; retrying with new ports")
                    continue
                raise
            except BaseException:  # e.g. KeyboardInterrupt while waiting: never leave a half-started server
                self._terminate(timeout_s=5.0)
                raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server: SIGINT, wait up to `timeout_s`, then SIGKILL the whole process group. Idempotent.

        May be called from another thread while start() waits: the start then fails with TritonStartError.
        """
        self._stop_requested = True
        if self._process is None:
            return
        self._terminate(timeout_s)
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------------------
    def _pick_ports(self) -> tuple[int, int, int]:
        config = self.config
        return (config.http_port or free_port(config.host), config.grpc_port or free_port(config.host),
                config.metrics_port or free_port(config.host))

    def _port_clash(self) -> bool:
        """True when the start failed on a port we picked ourselves, so new ports may help."""
        picked_any = 0 in (self.config.http_port, self.config.grpc_port, self.config.metrics_port)
        return picked_any and "address already in use" in self.failure_report().lower()

    @staticmethod
    def _environment(libs: Path) -> dict[str, str]:
        env = child_environment(os.environ)  # Triton and its Python stubs read no LOMAR_* setting: no secret either
        # The Python backend stub runs the `python3` found first on PATH: make it this environment's.
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs)) if p)
        return env

    def _launch(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        if self._log_path is None:
            handle, name = tempfile.mkstemp(prefix="lomar-triton-", suffix=".log")
            os.close(handle)
            self._log_path = Path(name)
        LOGGER.debug("starting %s", " ".join(command))
        with open(self._log_path, "ab") as log:
            parent = os.getpid()
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=lambda: die_with_parent(parent),
            )
        with self._lock:
            self._process = process
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            if self._stop_requested:
                raise TritonStartError("stop() was called while the server was starting")
            if process.poll() is not None:
                raise TritonStartError(f"Triton exited with code {process.returncode} while starting; "
                                       f"{self.failure_report()}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or listening but not ready (400)
            if time.monotonic() > deadline:
                raise TritonStartError(f"Triton was not ready at {url} in time; {self.failure_report()}")
            time.sleep(0.2)

    def _terminate(self, timeout_s: float) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                LOGGER.warning("Triton (pid %d) did not stop in %.0f s; killing it", process.pid, timeout_s)
        # Kill whatever is left in the group (the server if it hung, Python backend stubs if any outlived it).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
