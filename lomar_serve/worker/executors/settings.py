"""Which executor runs a worker's stages, and how: one validated pydantic-settings object (`LOMAR_*`).

    LOMAR_EXECUTOR=kubernetes LOMAR_K8S_IMAGE=registry/lomar-worker:1.0 LOMAR_K8S_GPUS=4 \
    LOMAR_K8S_PVC_JOBS=lomar-jobs LOMAR_K8S_PVC_MODEL_REPOSITORY=lomar-models LOMAR_K8S_PVC_DATA=lomar-data \
    lomar worker
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from lomar_serve.common.settings import SETTINGS_CONFIG
from lomar_serve.worker.executors.job_manifest import JobTemplate, Mount

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"  # a Kubernetes resource quantity
# CLAIM or CLAIM:SUB/PATH (a folder inside the claim)
VOLUME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?(:[^:]+)?$"


def _volume(value: str, path: Path, read_only: bool = False) -> Mount:
    claim, _, sub_path = value.partition(":")
    return Mount(claim=claim, path=path, sub_path=sub_path.strip("/"), read_only=read_only)


class ExecutorSettings(BaseSettings):
    """LOMAR_EXECUTOR and the LOMAR_K8S_* settings of the Kubernetes executor; immutable after construction."""

    model_config = SETTINGS_CONFIG

    executor: Literal["local", "kubernetes"] = Field("local", description=(
        "where a worker runs its stages: local processes, or Kubernetes Jobs (the LOMAR_K8S_* settings)"))
    # Kubernetes: where and as whom the Jobs run; the image is the worker image (lomar with train and export).
    k8s_namespace: Annotated[str, Field(pattern=DNS1123_LABEL)] = Field("default", description="the Jobs' namespace")
    k8s_image: str | None = Field(None, description="the Jobs' image: the worker image (lomar with the train and "
                                                    "export extras); required with the kubernetes executor")
    k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="the Jobs' imagePullPolicy")
    k8s_service_account: Annotated[str, Field(pattern=DNS1123_SUBDOMAIN)] | None = Field(
        None, description="the Jobs' service account (unset: the namespace's default)")
    k8s_python: str = Field("python", description="the image's Python interpreter")
    k8s_gpus: int = Field(0, ge=0, le=64, description="GPUs of a training stage (several: torchrun, one process "
                                                      "per GPU)")
    k8s_cpu: Annotated[str, Field(pattern=QUANTITY)] | None = Field(None, description="CPU request of a stage "
                                                                                     "(a Kubernetes quantity)")
    k8s_memory: Annotated[str, Field(pattern=QUANTITY)] | None = Field(None, description="memory request of a "
                                                                                        "stage, e.g. 16Gi")
    k8s_node_selector: dict[str, str] = Field({}, description='JSON, e.g. {"nvidia.com/gpu.product": '
                                                              '"NVIDIA-H100-80GB-HBM3"}')
    # Shared storage, mounted in the pod at the worker's own paths: CLAIM or CLAIM:SUBFOLDER.
    k8s_pvc_jobs: Annotated[str, Field(pattern=VOLUME)] | None = Field(
        None, description="the jobs folder's volume claim (CLAIM or CLAIM:SUBFOLDER); required with kubernetes")
    k8s_pvc_model_repository: Annotated[str, Field(pattern=VOLUME)] | None = Field(
        None, description="the model repository's volume claim (CLAIM or CLAIM:SUBFOLDER); required with kubernetes")
    k8s_pvc_data: Annotated[tuple[Annotated[str, Field(pattern=VOLUME)], ...], NoDecode] = Field(
        (), description="claims of the data roots, comma-separated, one to one with LOMAR_DATA_ROOTS (read-only)")
    # Life of the Jobs.
    k8s_ttl_s: int = Field(86_400, ge=0, description="ttlSecondsAfterFinished of the Jobs")
    k8s_termination_grace_s: int = Field(30, ge=0, description="SIGTERM -> SIGKILL of a deleted Job's pod, seconds")
    k8s_poll_interval_s: float = Field(2.0, gt=0, description="seconds between Job status reads while a stage runs")
    # The API server: in a pod, the service account's in-cluster configuration; else this kubeconfig file.
    k8s_kubeconfig: Path | None = Field(None, description="kubeconfig file outside a pod (unset: $KUBECONFIG or "
                                                          "~/.kube/config; in a pod: the in-cluster configuration)")
    k8s_context: str | None = Field(None, description="the kubeconfig's context (unset: its current one)")

    @field_validator("k8s_pvc_data", mode="before")
    @classmethod
    def _split_claims(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _kubernetes_needs(self) -> ExecutorSettings:
        if self.executor == "kubernetes":
            missing = [f"LOMAR_{name.upper()}" for name in ("k8s_image", "k8s_pvc_jobs", "k8s_pvc_model_repository")
                       if not getattr(self, name)]
            if missing:
                raise ValueError(f"the kubernetes executor needs {', '.join(missing)}")
        return self

    def job_template(self, jobs_dir: Path, model_repository: Path, data_roots: tuple[Path, ...] = ()) -> JobTemplate:
        """The Jobs' template, with the shared volumes mounted at the worker's paths (absolute: the pod has none of
        the worker's working directory to resolve relative ones from)."""
        paths = (jobs_dir, model_repository, *data_roots)
        relative = [str(path) for path in paths if not path.is_absolute()]
        if relative:
            raise ValueError(f"the kubernetes executor needs absolute paths, not {', '.join(relative)}")
        if len(self.k8s_pvc_data) != len(data_roots):
            raise ValueError(f"LOMAR_K8S_PVC_DATA names {len(self.k8s_pvc_data)} claims for {len(data_roots)} "
                             "data roots: give one claim (or CLAIM:SUBFOLDER) per data root, in the same order")
        mounts = [_volume(self.k8s_pvc_jobs or "", jobs_dir),
                  _volume(self.k8s_pvc_model_repository or "", model_repository)]
        mounts += [_volume(claim, root, read_only=True) for claim, root in zip(self.k8s_pvc_data, data_roots)]
        return JobTemplate(image=self.k8s_image or "", namespace=self.k8s_namespace, mounts=tuple(mounts),
                           gpus=self.k8s_gpus, python=self.k8s_python, image_pull_policy=self.k8s_image_pull_policy,
                           service_account=self.k8s_service_account, cpu=self.k8s_cpu, memory=self.k8s_memory,
                           ttl_s=self.k8s_ttl_s, termination_grace_s=self.k8s_termination_grace_s,
                           node_selector=dict(self.k8s_node_selector))
