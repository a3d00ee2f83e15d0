"""The Kubernetes `batch/v1` Job that runs one stage (a plain dict, as `kubectl` would send it).

The pod sees the shared volumes at the same paths as the worker (jobs folder, model repository, data roots), so a
stage's command line means the same thing in the pod as in a local process. Training runs on the template's GPUs,
under `torchrun --standalone --nproc-per-node=N` when there are several; export and verification need no GPU.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lomar_serve.worker.executors.base import STAGE_ENVIRONMENT, ExecutorError, StageRun

NAME = "lomar"  # app.kubernetes.io/name and part-of
LABEL_PREFIX = "lomar/"  # the project's own labels: lomar/job-id, lomar/stage
INSTANCE_LABEL = "app.kubernetes.io/instance"  # the Job's name, on the Job and its pod
GPU_RESOURCE = "nvidia.com/gpu"
DNS1123_LABEL_MAX = 63  # also the longest label value; a Job's name becomes its pods' job-name label
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")


def dns1123_label(text: str) -> str:
    """`text` as a DNS-1123 label (lower-case letters, digits and '-', alphanumeric at both ends, <= 63)."""
    label = _NOT_IN_NAME.sub("-", text.lower())[:DNS1123_LABEL_MAX].strip("-")
    if not label:
        raise ExecutorError(f"{text!r} has nothing to make a Kubernetes name of")
    return label


def job_name(run: StageRun) -> str:
    """`lomar-<job id>-<stage>-<random>`: unique per attempt (a resumed stage gets a new Job)."""
    suffix = secrets.token_hex(3)
    head = dns1123_label(f"{NAME}-{run.job_id}-{run.stage}")[:DNS1123_LABEL_MAX - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def job_labels(run: StageRun) -> dict[str, str]:
    """The labels every Job of this job carries."""
    return {f"{LABEL_PREFIX}job-id": dns1123_label(run.job_id)}


def job_selector(run: StageRun) -> str:
    """The label selector of every Job of this job (earlier attempts included)."""
    return ",".join(f"{key}={value}" for key, value in job_labels(run).items())


def pod_selector(name: str) -> str:
    """The label selector of the pod of Job `name`."""
    return f"{INSTANCE_LABEL}={name}"


@dataclass(frozen=True)
class Mount:
    """A persistent volume claim (or a sub-folder of one) mounted at `path`, the path the worker uses."""

    claim: str
    path: Path
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class JobTemplate:
    """Everything about the Jobs that does not depend on the stage."""

    image: str
    namespace: str = "default"
    mounts: tuple[Mount, ...] = ()
    gpus: int = 0  # for training; several -> torchrun with one process per GPU
    python: str = "python"  # the image's interpreter
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    cpu: str | None = None  # requests (a Kubernetes quantity), e.g. "4"
    memory: str | None = None  # requests and limit, e.g. "16Gi"
    ttl_s: int = 86_400  # finished Jobs (and their pods' logs) are kept this long
    termination_grace_s: int = 30  # SIGTERM -> SIGKILL of a deleted Job's pod
    node_selector: dict[str, str] = field(default_factory=dict)


def pod_command(template: JobTemplate, run: StageRun) -> list[str]:
    """The stage's command in the pod: the image's interpreter, under torchrun for multi-GPU training."""
    if len(run.command) < 3 or run.command[1] != "-m":
        raise ExecutorError(f"{run.stage}: the Kubernetes executor runs `python -m MODULE ...` commands, "
                            f"not {list(run.command[:3])}")
    if run.distributed and template.gpus > 1:
        # torchrun's -m runs the module like `python -m`, once per GPU (training reads RANK/LOCAL_RANK)
        return [template.python, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                f"--nproc-per-node={template.gpus}", *run.command[1:]]
    return [template.python, *run.command[1:]]


def _resources(template: JobTemplate, run: StageRun) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if template.cpu:
        requests["cpu"] = template.cpu
    if template.memory:
        requests["memory"] = limits["memory"] = template.memory
    if run.distributed and template.gpus:
        limits[GPU_RESOURCE] = str(template.gpus)
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def _volumes(template: JobTemplate) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One volume per claim (a claim may back several paths), one mount per path, plus memory for /dev/shm."""
    names: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    for mount in template.mounts:
        name = names.setdefault(mount.claim, f"shared-{len(names)}")
        entry: dict[str, Any] = {"name": name, "mountPath": str(mount.path)}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        if mount.read_only:
            entry["readOnly"] = True
        mounts.append(entry)
    volumes: list[dict[str, Any]] = [{"name": name, "persistentVolumeClaim": {"claimName": claim}}
                                     for claim, name in names.items()]
    # the container runtime's 64 MiB /dev/shm is too small for data-loader workers and NCCL
    volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
    mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    return volumes, mounts


def job_manifest(template: JobTemplate, run: StageRun, name: str) -> dict[str, Any]:
    """The Job `name` running `run` (backoffLimit 0: a failed stage fails the job; the worker decides retries)."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME,
              "app.kubernetes.io/component": "job-stage", "app.kubernetes.io/managed-by": "lomar-worker",
              INSTANCE_LABEL: name, **job_labels(run),
              f"{LABEL_PREFIX}stage": dns1123_label(run.stage)}
    volumes, mounts = _volumes(template)
    container: dict[str, Any] = {
        "name": "stage", "image": template.image, "imagePullPolicy": template.image_pull_policy,
        "command": pod_command(template, run), "workingDir": str(run.workdir),
        # STAGE_ENVIRONMENT alone: nothing of the worker's environment (its admin token, database URLs) is put
        # into a Job, where anyone who may read Jobs in the namespace would see it
        "env": [{"name": key, "value": value} for key, value in STAGE_ENVIRONMENT.items()],
        "volumeMounts": mounts}
    resources = _resources(template, run)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes,
                           "terminationGracePeriodSeconds": template.termination_grace_s}
    if template.service_account:
        pod["serviceAccountName"] = template.service_account
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": template.namespace, "labels": labels},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": template.ttl_s,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }
