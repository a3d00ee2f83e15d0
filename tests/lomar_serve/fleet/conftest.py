"""A fleet on one machine, started exactly as docs/fleet.md says: two Tritons (`lomar triton`), two gateways
(`lomar gateway`, each on its own Triton), the control plane (`lomar control-plane`) and a worker (`lomar worker`),
all sharing one model repository and one jobs folder; the gateways keep their image collections in one
PostgreSQL with pgvector (conftest.py of tests/lomar_serve starts it). `Load` sends requests through a gateway
for as long as a test needs to see that none fails."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.lomar_serve.photos import encode
from tests.lomar_serve.processes import alive, children, command_line, free_port, reap, wait_until_ok
from tests.lomar_serve.tiny_models import export_tiny, export_tiny_reconstruction, synthetic_set

REPO = Path(__file__).resolve().parents[3]
TOKEN = "fleet-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "lomar_classifier"
CLASSES = ["class_000_circle", "class_001_square", "class_002_triangle"]
PNG = encode(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))


@dataclass
class Fleet:
    work: Path
    repository: Path
    postgres_url: str
    triton_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    gateway_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    control_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings for every role

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "LOMAR_ADMIN_TOKEN": TOKEN,
                "LOMAR_MODEL_REPOSITORY": str(self.repository), "LOMAR_JOBS_DIR": str(self.work / "jobs"),
                "LOMAR_DATA_ROOTS": str(self.work / "data"), "LOMAR_CONTROL_PLANE_URL": self.control_url,
                "LOMAR_DEPLOY_DRAIN_S": "1.5", "LOMAR_RETRY_AFTER_S": "1", "LOMAR_SEARCH_ENGINE": "pgvector",
                "LOMAR_SEARCH_PG_URL": self.postgres_url, "LOMAR_SEARCH_CHECK_INTERVAL_S": "1", **self.extra_env}

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.gateway_ports]

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def commands(self) -> dict[str, list[str]]:
        """Role -> its command line, as docs/fleet.md gives them."""
        triton_urls = [f"127.0.0.1:{port}" for port in self.triton_ports]
        commands = {f"triton-{i}": ["triton", "--model-repository", str(self.repository), "--http-port", str(port)]
                    for i, port in enumerate(self.triton_ports)}
        commands |= {f"gateway-{i}": ["gateway", "--port", str(port), "--triton-url", triton_urls[i],
                                      "--model-repository", str(self.repository)]
                     for i, port in enumerate(self.gateway_ports)}
        commands["control-plane"] = ["control-plane", "--port", str(self.control_port),
                                     *[arg for url in triton_urls for arg in ("--triton-url", url)]]
        commands["worker"] = ["worker"]
        return commands

    def start(self, role: str) -> None:
        log = open(self.work / f"{role}.log", "ab")  # noqa: SIM115 - kept open by the child
        self.processes[role] = subprocess.Popen([sys.executable, "-m", "lomar_serve.cli", *self.commands()[role]],
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=self.env, cwd=self.work)
        log.close()

    def stop(self, role: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(role, None)
        if process is None or process.poll() is not None:
            return
        left = children(process.pid)
        process.send_signal(sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reap(left)

    def log_tail(self, role: str, chars: int = 3000) -> str:
        path = self.work / f"{role}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_http(self, role: str, url: str, timeout_s: float = 240.0) -> None:
        wait_until_ok(self.processes[role], url, role, lambda: self.log_tail(role), timeout_s)

    def tritonserver_pid(self, index: int) -> int | None:
        """The tritonserver process that `lomar triton` number `index` supervises."""
        for pid in children(self.processes[f"triton-{index}"].pid):
            if command_line(pid)[0].endswith("tritonserver") and alive(pid):
                return pid
        return None


def started_fleet(work: Path, postgres_url: str, extra_env: dict[str, str] | None = None) -> Iterator[Fleet]:
    """Every role of a fleet over a new repository in `work` (classifier versions 1, serving, and 2; the default
    reconstruction model), ready; stopped after."""
    repository = work / "repo"
    assert export_tiny(repository, work, CLASSES, seed=1) == 1
    assert export_tiny(repository, work, CLASSES, seed=2) == 2  # on disk, not serving
    export_tiny_reconstruction(repository, work)
    synthetic_set(work / "data" / "set")
    fleet = Fleet(work, repository, postgres_url, extra_env=extra_env or {})
    try:
        for role in fleet.commands():
            fleet.start(role)
        for index, port in enumerate(fleet.triton_ports):
            fleet.wait_http(f"triton-{index}", f"http://127.0.0.1:{port}/v2/health/ready")
        for index, url in enumerate(fleet.gateway_urls):
            fleet.wait_http(f"gateway-{index}", f"{url}/readyz")
        fleet.wait_http("control-plane", f"{fleet.control_url}/healthz")
        yield fleet
    finally:
        for role in ("worker", "control-plane", "gateway-0", "gateway-1", "triton-0", "triton-1"):
            fleet.stop(role)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, new_postgres_database: Callable[[], str]) -> Iterator[Fleet]:
    yield from started_fleet(tmp_path_factory.mktemp("fleet"), new_postgres_database())


def classify(client: httpx.Client, model: str | None = None) -> httpx.Response:
    params = {"top_k": 1, **({"model": model} if model else {})}
    return client.post("/v1/classify", content=PNG, headers={"content-type": "image/png"}, params=params)


def served_version(url: str, model: str | None = None) -> str:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = classify(client, model)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic
    status: int  # 0: the request failed in transit
    version: str  # the model version that answered ('' unless 200)
    image: int  # index into the load's images
    error: str = ""  # a failure's body or exception


class Load(threading.Thread):
    """Classify requests through one gateway, one after another, cycling through `images`; every answer kept."""

    def __init__(self, url: str, images: tuple[bytes, ...] = (PNG,)) -> None:
        super().__init__(daemon=True)
        self.url, self.images = url, images
        self.stop = threading.Event()
        self.answers: list[Answer] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            count = 0
            while not self.stop.is_set():
                image = count % len(self.images)
                count += 1
                try:
                    response = client.post("/v1/classify", content=self.images[image], params={"top_k": 1},
                                           headers={"content-type": "image/png"})
                    ok = response.status_code == 200
                    self.answers.append(Answer(time.monotonic(), response.status_code,
                                               response.json().get("model_version", "") if ok else "", image,
                                               "" if ok else response.text[:300]))
                except httpx.HTTPError as error:
                    self.answers.append(Answer(time.monotonic(), 0, "", image, repr(error)))

    def failures(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]

    def between(self, start: float, end: float) -> list[Answer]:
        return [answer for answer in self.answers if start <= answer.at < end]


@contextmanager
def traffic(urls: list[str], images: tuple[bytes, ...] = (PNG,), min_answers: int = 5) -> Iterator[list[Load]]:
    """A Load through each gateway while the block runs; after it, none may have failed a request, and each has
    more than `min_answers` answers."""
    loads = [Load(url, images) for url in urls]
    for load in loads:
        load.start()
    try:
        yield loads
    finally:
        for load in loads:
            load.stop.set()
            load.join(60)
    for load in loads:
        failed = load.failures()
        assert not failed, f"{load.url}: {len(failed)} of {len(load.answers)} failed, e.g. {failed[:3]}"
        assert len(load.answers) > min_answers, f"{load.url}: only {len(load.answers)} answers"
