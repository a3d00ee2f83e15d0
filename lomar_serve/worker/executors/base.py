"""The executor interface: how one stage of a job (training, export, verification) is run somewhere.

An Executor starts a stage's command and returns an Execution, a handle the job runner polls (`wait`) and stops
(`terminate`). Wherever the stage runs, its output is appended to the job's log file, so the runner reads
progress and errors the same way for every executor.

    execution = executor.start(StageRun(job_id, "training", command, paths.log, paths.job_dir, distributed=True))
    while (code := execution.wait(1.0)) is None:
        ...                                   # poll progress
    execution.terminate(grace_s=10.0)         # from another thread, to cancel
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lomar_serve.common.settings import child_environment
from lomar_serve.jobs.errors import LifecycleError

# Every stage's environment: Python writes its output as it goes, so logs and progress are live.
STAGE_ENVIRONMENT = {"PYTHONUNBUFFERED": "1"}


def stage_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """A stage process's environment: the worker's `parent` environment without any role setting (`LOMAR_*`) and
    without libpq's password variables, plus STAGE_ENVIRONMENT.

    Every `LOMAR_*` variable rather than a list of the secret ones: stages (training, export, scoring) take all
    they need from their command lines (stages.py) and read no setting; and the worker cannot know every role's
    settings (under `lomar serve` its environment also holds the gateway's LOMAR_SEARCH_PG_URL, whose class it
    may not import). So the admin token, both database URLs and any secret setting added later never reach a
    stage, its log or a process it starts."""
    return {**child_environment(parent), **STAGE_ENVIRONMENT}


def log_line(log_path: Path, text: str) -> None:
    """Append one time-stamped line of the executor's own to a job log (beside the stage's output)."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")


class ExecutorError(LifecycleError):
    """A stage could not be started or followed (e.g. the cluster refused the Job); the job fails with this."""

    status, code = 502, "executor_error"


@dataclass(frozen=True)
class StageRun:
    """One stage to run.

    `command` is a Python invocation, `(interpreter, "-m", module, *args)` (lomar_serve/worker/stages.py):
    the local executor runs it as is, a remote one runs `command[1:]` with its own image's interpreter.
    """

    job_id: str
    stage: str  # the stage's name in messages, logs and labels ("training", "export", "verification")
    command: tuple[str, ...]
    log_path: Path  # appended to, never truncated
    workdir: Path  # the job's folder (on shared storage for remote executors)
    distributed: bool = False  # may run as several processes over the executor's GPUs (torchrun): training


class Execution(ABC):
    """A started stage: poll it with `wait`, stop it with `terminate` (safe to call from another thread)."""

    description: str  # what and where, for logs ("process group 1234", "Kubernetes Job ns/name")

    @abstractmethod
    def wait(self, timeout_s: float) -> int | None:
        """Wait up to `timeout_s` for the stage to end: its exit code (0 = success), or None while it runs."""

    @abstractmethod
    def terminate(self, grace_s: float) -> None:
        """Stop the stage: ask it to stop, force it after `grace_s`. A stage that has ended is left alone."""

    @property
    def pid(self) -> int | None:
        """The local process (and process group) id, where the stage is a local process; None elsewhere."""
        return None


class Executor(ABC):
    """Starts stages; one instance serves every job of a worker (it is shared between threads)."""

    name: str

    @abstractmethod
    def start(self, run: StageRun) -> Execution:
        """Start `run`; ExecutorError if it cannot be started."""
