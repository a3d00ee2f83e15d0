"""Stages as Kubernetes `batch/v1` Jobs, through the official `kubernetes` client (the `kubernetes` extra).

One Job per stage (job_manifest.py); `wait` reads the Job's status, the pod's log is copied into the job log as
it is written (pod_log.py), `terminate` deletes the Job with foreground propagation (the pod gets SIGTERM, then
SIGKILL after its termination grace period). Jobs outlive the worker: a Job still running for this job (its
worker died) is deleted before the stage starts again, so two attempts never write the same checkpoints.

The worker's service account needs: jobs (batch) create, get, list, delete; pods list; pods/log get.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from lomar_serve.worker.executors.base import Execution, Executor, ExecutorError, StageRun, log_line
from lomar_serve.worker.executors.job_manifest import JobTemplate, job_manifest, job_name, job_selector, pod_selector
from lomar_serve.worker.executors.pod_log import PodLogCopier

LOGGER = logging.getLogger(__name__)
PROPAGATION = "Foreground"  # the Job object goes only once its pod has
API_OUTAGE_S = 300.0  # an API server unreachable this long (in one wait) fails the stage
LOG_DRAIN_S = 30.0  # how long the end of a pod's log may take to arrive after its Job ended
STOPPED_CODE = -signal.SIGTERM  # what wait() returns for a terminated stage, as Popen does for a signal


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """A client of the cluster the worker runs in (its service account), else of `kubeconfig`'s context."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                                    client_configuration=configuration)
    except (ConfigException, OSError) as error:
        raise ExecutorError(f"no Kubernetes API configuration: {error}") from error
    return client.ApiClient(configuration)


def api_message(error: Exception) -> str:
    """The API server's own message of an error (its Status body), else the HTTP reason."""
    if isinstance(error, ApiException):
        try:
            return f"{error.status} {json.loads(error.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{error.status} {error.reason}"
    return str(error)


def _ended(job: Any) -> str | None:
    """"Complete" or "Failed" once the Job controller says so (pods have terminated), else None."""
    for condition in (job.status.conditions if job.status else None) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


class KubernetesExecution(Execution):
    """A stage's Job; safe to wait on from one thread and terminate from another."""

    def __init__(self, batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str, name: str,
                 run: StageRun, poll_interval_s: float) -> None:
        self.batch, self.core = batch, core
        self.namespace, self.name, self.run = namespace, name, run
        self.description = f"Kubernetes Job {namespace}/{name}"
        self.poll_interval_s = poll_interval_s
        self._terminated = threading.Event()
        self._wake = threading.Event()  # set by terminate: the waiting thread looks at once
        self._code: int | None = None
        self._logs = PodLogCopier(core, namespace, pod_selector(name), run.log_path, poll_interval_s)
        self._logs.start()

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        unreachable_since: float | None = None
        while self._code is None:
            try:
                code = self._poll()
                unreachable_since = None
            except (ApiException, HTTPError) as error:  # an API server restart: keep waiting, a while
                unreachable_since = unreachable_since or time.monotonic()
                LOGGER.warning("reading %s failed: %s", self.description, api_message(error))
                if time.monotonic() - unreachable_since > API_OUTAGE_S:
                    raise ExecutorError(f"{self.description} could not be read for {API_OUTAGE_S:.0f} s: "
                                        f"{api_message(error)}") from error
                code = None
            if code is not None:
                self._logs.finish(LOG_DRAIN_S)
                self._code = code
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._wake.wait(min(self.poll_interval_s, remaining)):
                self._wake.clear()
        return self._code

    def _poll(self) -> int | None:
        try:
            job = self.batch.read_namespaced_job(self.name, self.namespace)  # not /status: one RBAC rule less
        except ApiException as error:
            if error.status != 404:
                raise
            if self._terminated.is_set():
                return STOPPED_CODE
            log_line(self.run.log_path, f"{self.description} was deleted by someone else; the stage is lost")
            return 1
        ended = _ended(job)
        if ended == "Complete":
            return 0
        if ended == "Failed":
            return self._failure(job)
        return None

    def _failure(self, job: Any) -> int:
        """The container's exit code (1 if the pod is gone), with why it failed noted in the job log."""
        why = [f"{c.reason}: {c.message}" for c in job.status.conditions or [] if c.type == "Failed"]
        code = 1
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=pod_selector(self.name)).items
        except (ApiException, HTTPError) as error:
            pods = []
            why.append(f"its pod could not be read ({api_message(error)})")
        for pod in pods:
            for container in (pod.status.container_statuses if pod.status else None) or []:
                ended = container.state.terminated if container.state else None
                if ended is not None:
                    code = ended.exit_code or 1
                    # "Error" says nothing, and would hide the stage's own error line (jobs.last_error_line)
                    reason = f" ({ended.reason})" if ended.reason and ended.reason != "Error" else ""
                    why.append(f"pod {pod.metadata.name} exited with code {ended.exit_code}{reason}")
        self._logs.finish(LOG_DRAIN_S)  # the stage's own output first, then why it failed
        log_line(self.run.log_path, f"{self.description} failed: " + "; ".join(why))
        return code

    def terminate(self, grace_s: float) -> None:
        """Delete the Job (its pod gets SIGTERM, SIGKILL after its termination grace), wait up to `grace_s` for it."""
        if self._code is not None:
            return
        self._terminated.set()
        self._wake.set()
        try:
            self.batch.delete_namespaced_job(self.name, self.namespace, propagation_policy=PROPAGATION)
        except ApiException as error:
            if error.status != 404:
                raise ExecutorError(f"{self.description} could not be deleted: {api_message(error)}") from error
        log_line(self.run.log_path, f"{self.description} deleted (stopping the stage)")
        if not _gone(self.batch, self.namespace, self.name, grace_s):
            LOGGER.warning("%s was still there %.0f s after its deletion", self.description, grace_s)


def _gone(batch: client.BatchV1Api, namespace: str, name: str, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for a deleted Job to disappear."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            batch.read_namespaced_job(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return True
        except HTTPError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


class KubernetesExecutor(Executor):
    """Runs each stage as a Job of `template` through `api` (a configured kubernetes.client.ApiClient)."""

    name = "kubernetes"

    def __init__(self, api: client.ApiClient, template: JobTemplate, poll_interval_s: float = 2.0) -> None:
        self.template = template
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.poll_interval_s = poll_interval_s

    def start(self, run: StageRun) -> KubernetesExecution:
        name = job_name(run)
        manifest = job_manifest(self.template, run, name)
        namespace = self.template.namespace
        try:
            self._remove_leftovers(run)
            self.batch.create_namespaced_job(namespace, client.V1Job.from_dict(manifest))
        except (ApiException, HTTPError) as error:
            raise ExecutorError(f"{run.stage} could not be started as Kubernetes Job {namespace}/{name}: "
                                f"{api_message(error)}") from error
        gpus = self.template.gpus if run.distributed else 0
        log_line(run.log_path, f"{run.stage} runs as Kubernetes Job {namespace}/{name} (image "
                               f"{self.template.image}, {gpus} GPU{'s' if gpus != 1 else ''})")
        return KubernetesExecution(self.batch, self.core, namespace, name, run, self.poll_interval_s)

    def _remove_leftovers(self, run: StageRun) -> None:
        """Delete Jobs of this job that still run (an earlier attempt whose worker died) and wait until gone."""
        namespace = self.template.namespace
        jobs = self.batch.list_namespaced_job(namespace, label_selector=job_selector(run)).items
        for job in jobs:
            if _ended(job) is not None:
                continue
            name = job.metadata.name
            log_line(run.log_path, f"deleting Kubernetes Job {namespace}/{name}, left running by an earlier "
                                   "attempt of this job")
            try:
                self.batch.delete_namespaced_job(name, namespace, propagation_policy=PROPAGATION)
            except ApiException as error:
                if error.status != 404:
                    raise
            if not _gone(self.batch, namespace, name, self.template.termination_grace_s + 30.0):
                raise ExecutorError(f"Kubernetes Job {namespace}/{name} of an earlier attempt is still there")
