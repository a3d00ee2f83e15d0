"""Stages as local processes: each in its own session (so its whole process group can be signalled), tied to the
worker by the parent-death signal, its output appended to the job log."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from lomar_serve.common.processes import die_with_parent
from lomar_serve.worker.executors.base import Execution, Executor, ExecutorError, StageRun, stage_environment

LOGGER = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[3]  # stages import this checkout's packages, installed or not


class LocalExecution(Execution):
    """A stage's process; its pid is also its process group's id."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.description = f"process group {process.pid}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, grace_s: float) -> None:
        """SIGTERM the process group, SIGKILL it after `grace_s` (training's data-loader workers included)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            LOGGER.warning("job process %d did not stop on SIGTERM; killing it", self.process.pid)
        except ProcessLookupError:
            return
        try:  # also the group's other members, even when the leader has left
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LocalExecutor(Executor):
    """Runs each stage as a child process of the worker, in the job's folder."""

    name = "local"

    def start(self, run: StageRun) -> LocalExecution:
        python_path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**stage_environment(os.environ), "PYTHONPATH": python_path}  # no secret of the worker's
        parent = os.getpid()
        try:
            with open(run.log_path, "ab") as log:
                process = subprocess.Popen(list(run.command), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, env=env, cwd=run.workdir,
                                           start_new_session=True, preexec_fn=lambda: die_with_parent(parent))
        except OSError as error:
            raise ExecutorError(f"{run.stage} could not be started: {error}") from error
        return LocalExecution(process)
