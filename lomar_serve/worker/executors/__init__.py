"""Where a job's stages run: local processes (the default) or Kubernetes `batch/v1` Jobs (see base.py).

    executor = make_executor(ExecutorSettings(), jobs_dir=..., model_repository=..., data_roots=...)
    JobSettings(jobs_dir=..., model_repository=..., executor=executor)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lomar_serve.worker.executors.base import Execution, Executor, ExecutorError, StageRun
from lomar_serve.worker.executors.local import LocalExecutor
from lomar_serve.worker.executors.settings import ExecutorSettings

__all__ = ["Execution", "Executor", "ExecutorError", "ExecutorSettings", "LocalExecutor", "StageRun",
           "make_executor"]


def make_executor(settings: ExecutorSettings, *, jobs_dir: Path, model_repository: Path,
                  data_roots: Sequence[Path] = ()) -> Executor:
    """The executor `settings.executor` names; the paths are the worker's (the Kubernetes pods mount the shared
    volumes there). The Kubernetes client is imported only for the Kubernetes executor (the `kubernetes` extra)."""
    if settings.executor == "local":
        return LocalExecutor()
    from lomar_serve.worker.executors.kubernetes import KubernetesExecutor, api_client

    try:
        template = settings.job_template(jobs_dir, model_repository, tuple(data_roots))
    except ValueError as error:
        raise ExecutorError(str(error)) from error
    return KubernetesExecutor(api_client(settings.k8s_kubeconfig, settings.k8s_context), template,
                              settings.k8s_poll_interval_s)
