"""Processes of the end-to-end tests: start `lomar serve`, a gateway, a control plane or a worker as real processes,
wait for them, and look at the processes they leave (children, process groups); and an app served by uvicorn on a
thread of the test's own process (`served_on_a_thread`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

REPO = Path(__file__).resolve().parents[2]
E2E_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog")  # the micro fixture has 6 classes
START_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def group_gone(pid: int) -> bool:
    """No process of the process group `pid` is left (killed members are reaped by init a moment later)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def reap(pids: list[int], timeout_s: float = 15.0) -> None:
    """Give `pids` (a stopped process's descendants) `timeout_s` to exit, then SIGKILL those still alive."""
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 30.0,
               context: Callable[[], str] = lambda: "") -> Any:
    """condition()'s first true value, asked every 50 ms; fails saying what was awaited (and `context()`, e.g. a
    log tail) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{context()}")


def wait_until_ok(process: subprocess.Popen, url: str, what: str, log_tail: Callable[[], str],
                  timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the log when `process` exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log_tail()}")
        try:
            if httpx.get(url, timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{what} not ready at {url} after {timeout_s:.0f} s:\n{log_tail()}")


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


@dataclass
class GatewayProcess:
    """The `lomar serve` subprocess under test."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def triton_pid(self) -> int | None:
        """The tritonserver child of the gateway (None while it is being restarted)."""
        for pid in children(self.process.pid):
            if command_line(pid)[0].endswith("tritonserver") and alive(pid):
                return pid
        return None

    def triton_http_url(self) -> str:
        """"host:port" of Triton's HTTP endpoint, from its command line."""
        pid = self.triton_pid()
        assert pid is not None, "Triton is not running"
        args = dict(arg.split("=", 1) for arg in command_line(pid)[1:] if "=" in arg)
        return f"{args['--http-address']}:{args['--http-port']}"

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        wait_until_ok(self.process, f"{self.url}/readyz", "lomar serve", self.log_tail, timeout_s)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class ServeStack:
    """A one-box `lomar serve` in `work` (model repository `work/repo`, logs `work/serve-N.log`) with the admin
    token in `env`, so it starts a control plane and a worker too; restartable with the same settings and ports."""

    def __init__(self, work: Path, env: Mapping[str, str]) -> None:
        self.work, self.port, self.control_port = work, free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.control_port}"  # the control plane's own port
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_CONTROL_PORT": str(self.control_port), **env}
        self.served: GatewayProcess | None = None
        self.starts = 0

    def start(self) -> GatewayProcess:
        self.starts += 1
        log_path = self.work / f"serve-{self.starts}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "lomar_serve.cli", "serve", "--model-repository", str(self.work / "repo"),
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=REPO)
        self.served = GatewayProcess(url=self.url, process=process, log_path=log_path)
        self.served.wait_ready()
        deadline = time.monotonic() + 60
        while not self.admin_ready():
            assert time.monotonic() < deadline, f"the control plane did not start:\n{self.served.log_tail()}"
            time.sleep(0.25)
        return self.served

    def admin_ready(self) -> bool:
        try:
            return httpx.get(f"{self.admin_url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def descendants(self) -> list[int]:
        found = children(self.served.process.pid)
        return found + [pid for child in found for pid in children(child)]

    def stop(self) -> None:
        if self.served is None or self.served.process.poll() is not None:
            return
        left = self.descendants()
        self.served.process.send_signal(signal.SIGTERM)
        code = self.served.process.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [pid for pid in left if alive(pid)]
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        assert code == 0 and not orphans, f"exit {code}, orphans {orphans}:\n{self.served.log_tail()}"


def launch_serve(args: list[str], log_path: Path, env: dict[str, str]) -> GatewayProcess:
    """Start `lomar serve ARGS --port FREE` from the repository root (not yet ready: call wait_ready)."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lomar_serve.cli", "serve", *args, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=REPO)
    return GatewayProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


@contextmanager
def gateway_beside(triton: GatewayProcess, model_repository: Path, log_path: Path,
                   env: dict[str, str]) -> Iterator[GatewayProcess]:
    """A second `lomar serve` with its own settings (`env`) in front of the Triton that `triton` supervises: ready
    inside the block, stopped after it. Its embedded collections are in a folder of its own (next to its log)
    unless `env` says otherwise: the first gateway holds the repository's."""
    env = {"LOMAR_SEARCH_DIR": str(log_path.parent / f"{log_path.stem}-collections"), **env}
    served = launch_serve(["--triton-url", triton.triton_http_url(), "--model-repository", str(model_repository)],
                          log_path, env)
    try:
        served.wait_ready(timeout_s=120)
        yield served
    finally:
        served.process.terminate()
        served.process.wait(timeout=60)


@dataclass
class ControlPlaneProcess:
    """A `lomar control-plane` subprocess."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        wait_until_ok(self.process, f"{self.url}/readyz", "lomar control-plane", self.log_tail, timeout_s)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def launch_control_plane(triton_urls: list[str], model_repository: Path, log_path: Path,
                         env: dict[str, str]) -> ControlPlaneProcess:
    """Start `lomar control-plane` on a free port for these Tritons (not yet ready: call wait_ready). `env` must
    hold LOMAR_ADMIN_TOKEN."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_TRITON_URLS": ",".join(triton_urls),
                   "LOMAR_MODEL_REPOSITORY": str(model_repository), "LOMAR_CONTROL_PORT": str(port), **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", "control-plane"], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=REPO)
    return ControlPlaneProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


class WorkerProcess:
    """One `python -m lomar_serve.cli worker` on a test's folders (WORK/jobs, WORK/repo), its output in a log file.
    `env`: more LOMAR_* settings; without LOMAR_STORE_URL among them the store is JOBS_DIR/lifecycle.sqlite."""

    def __init__(self, work: Path, worker_id: str, env: Mapping[str, str] | None = None) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_JOBS_DIR": str(work / "jobs"),
                       "LOMAR_MODEL_REPOSITORY": str(work / "repo"), "LOMAR_HEARTBEAT_INTERVAL_S": "0.5",
                       "LOMAR_POLL_INTERVAL_S": "0.3"}
        environment.pop("LOMAR_STORE_URL", None)
        environment.update(env or {})
        self.log_path = work / f"worker-{worker_id}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", "worker",
                                             f"--worker-id={worker_id}"], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=environment, cwd=REPO)

    def log(self, chars: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@contextmanager
def served_on_a_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """uvicorn serving `config` on a daemon thread of this process while the block runs (real HTTP, no child
    process)."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
