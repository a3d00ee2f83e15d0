"""Executors: the local one with real processes (`sh -c`), the Kubernetes one with the real `kubernetes` client.

No Kubernetes cluster runs here: the Kubernetes executor talks over real HTTP to kubernetes_stub.KubernetesStub,
which stands for the API server together with the Job controller and the kubelet (a created Job's pod goes
Pending -> Running -> its scripted exit code, its log readable and followable). What the stub cannot check, that
a cluster would accept the Job, is checked by validating the manifest the client sent against the Kubernetes
API schemas (kubernetes-validate, strict).
"""
from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobPlan, JobRequest
from lomar_serve.jobs.store import LifecycleStore
from lomar_serve.settings_reference import CONTAINER_VARIABLES, secret_variables
from lomar_serve.worker.executors import ExecutorError, ExecutorSettings, LocalExecutor, StageRun, make_executor
from lomar_serve.common.settings import LIBPQ_SECRETS
from lomar_serve.worker.executors.job_manifest import DNS1123_LABEL_MAX, JobTemplate, job_manifest, job_name
from lomar_serve.worker.executors.kubernetes import KubernetesExecutor
from lomar_serve.worker.runner import JobSettings, Worker
from lomar_serve.worker.stages import export_command, training_command
from tests.lomar_serve.processes import group_gone
from tests.lomar_serve.worker.kubernetes_stub import KubernetesStub, PodScript

KUBERNETES_VERSION = "1.34.0"  # the schemas the manifests are validated against
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
JOB_ID = "a1b2c3d4e5f6"


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finish(execution, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (code := execution.wait(0.2)) is None:
        assert time.monotonic() < deadline, f"{execution.description} did not end"
    return code


@pytest.fixture()
def paths(tmp_path: Path) -> JobFiles:
    paths = JobFiles(tmp_path / "jobs" / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    return paths


def sh(paths: JobFiles, script: str, stage: str = "export") -> StageRun:
    return StageRun(JOB_ID, stage, ("sh", "-c", script), paths.log, paths.job_dir)


# -- local processes ---------------------------------------------------------------------------------------------
def test_local_stage_appends_its_output_and_exit_code(paths: JobFiles) -> None:
    paths.log.write_text("earlier lines\n")
    execution = LocalExecutor().start(sh(paths, 'echo "out $PYTHONUNBUFFERED"; pwd; echo err >&2; exit 3'))
    assert finish(execution) == 3
    assert paths.log.read_text() == f"earlier lines\nout 1\n{paths.job_dir}\nerr\n"
    assert execution.pid is not None and execution.description == f"process group {execution.pid}"


def test_local_wait_is_none_while_it_runs_and_terminate_stops_the_group(paths: JobFiles) -> None:
    execution = LocalExecutor().start(sh(paths, "sleep 30 & echo started; wait"))
    wait_for(lambda: "started" in paths.log.read_text())
    assert execution.wait(0.1) is None
    execution.terminate(grace_s=5.0)
    assert execution.wait(1.0) == -signal.SIGTERM
    wait_for(lambda: group_gone(execution.pid))  # the background sleep went with its group


def test_local_terminate_kills_a_stage_that_ignores_sigterm(paths: JobFiles) -> None:
    # an ignored signal stays ignored across fork and exec: the shell and its sleep both ignore SIGTERM
    execution = LocalExecutor().start(sh(paths, 'trap "" TERM; sleep 60 & echo ready; wait'))
    wait_for(lambda: "ready" in paths.log.read_text())
    started = time.monotonic()
    execution.terminate(grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5.0
    assert execution.wait(1.0) == -signal.SIGKILL
    wait_for(lambda: group_gone(execution.pid))


def secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every secret a worker's environment may hold, set: each role's secret settings (derived from their settings
    classes, so a new one is covered), the compose file's password, libpq's password variables."""
    names = secret_variables() | {name for name, (_, meaning) in CONTAINER_VARIABLES.items() if "password" in meaning}
    assert names >= {"LOMAR_ADMIN_TOKEN", "LOMAR_STORE_URL", "LOMAR_SEARCH_PG_URL", "LOMAR_PG_PASSWORD"}
    values = {name: f"secret-of-{name.lower()}-0123456789" for name in names | LIBPQ_SECRETS}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_a_local_stage_inherits_no_secret(paths: JobFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process prints its whole environment into the job log (which the admin API serves)."""
    secrets = secrets_in_the_environment(monkeypatch)
    monkeypatch.setenv("STAGE_TEST_MARKER", "kept")  # the rest of the environment (CUDA, PATH...) stays
    assert finish(LocalExecutor().start(sh(paths, "env"))) == 0
    seen = paths.log.read_text()
    assert "STAGE_TEST_MARKER=kept" in seen and "PYTHONUNBUFFERED=1" in seen
    leaked = sorted(name for name, value in secrets.items() if name in seen or value in seen)
    assert not leaked, f"secrets in a stage's environment: {leaked}"


def test_a_kubernetes_job_carries_no_secret(paths: JobFiles, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    secrets = secrets_in_the_environment(monkeypatch)
    manifest = json.dumps(job_manifest(JobTemplate(image="lomar-worker:1"), training_run(paths, tmp_path / "data"),
                                       "lomar-job-training-abc"))
    assert not [name for name, value in secrets.items() if name in manifest or value in manifest]


def test_local_stage_that_cannot_start_is_an_executor_error(paths: JobFiles) -> None:
    run = StageRun(JOB_ID, "export", (str(paths.job_dir / "no-such-program"),), paths.log, paths.job_dir)
    with pytest.raises(ExecutorError, match="export could not be started"):
        LocalExecutor().start(run)


def test_job_settings_run_stages_locally_by_default(tmp_path: Path) -> None:
    assert isinstance(JobSettings(jobs_dir=tmp_path, model_repository=tmp_path).executor, LocalExecutor)


# -- Kubernetes ----------------------------------------------------------------------------------------------------
def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: stub, cluster: {{server: "{server}"}}}}]
users: [{{name: worker, user: {{token: worker-token}}}}]
contexts: [{{name: stub, context: {{cluster: stub, user: worker}}}}]
current-context: stub
""")
    return path


@pytest.fixture()
def shared(tmp_path: Path) -> dict[str, Any]:
    """The worker's shared folders (absolute, as the pods mount them)."""
    return {"jobs_dir": tmp_path / "jobs", "model_repository": tmp_path / "shared" / "models",
            "data_roots": (tmp_path / "data",)}


def kubernetes_settings(config: Path, **overrides: Any) -> ExecutorSettings:
    return ExecutorSettings(**{
        "executor": "kubernetes", "k8s_kubeconfig": config, "k8s_namespace": "lomar",
        "k8s_image": "registry.example/lomar-worker:1.0", "k8s_service_account": "lomar-worker", "k8s_gpus": 4,
        "k8s_cpu": "8", "k8s_memory": "32Gi", "k8s_pvc_jobs": "lomar-jobs",
        "k8s_pvc_model_repository": "lomar-shared:models", "k8s_pvc_data": ("lomar-data",),
        "k8s_poll_interval_s": 0.05, "k8s_termination_grace_s": 5, **overrides})


@pytest.fixture()
def cluster(tmp_path: Path, shared: dict[str, Any]) -> Iterator[tuple[KubernetesStub, KubernetesExecutor]]:
    """The stub API server (each test sets `stub.script`) and an executor made from settings and a kubeconfig."""
    with KubernetesStub(lambda manifest: PodScript()) as stub:
        settings = kubernetes_settings(kubeconfig(tmp_path / "kubeconfig", stub.url))
        executor = make_executor(settings, **shared)
        assert isinstance(executor, KubernetesExecutor)
        yield stub, executor


def training_run(paths: JobFiles, data_root: Path) -> StageRun:
    """The real training stage's command line, as the job runner builds it."""
    plan = JobPlan(kind="finetune", data_dir=str(data_root / "base"), model_name="lomar_classifier", epochs=3,
                   init=str(data_root / "base.pth"), options={"batch_size": 64})
    return StageRun(JOB_ID, "training", tuple(training_command(plan, paths, "/usr/bin/python3")), paths.log,
                    paths.job_dir, distributed=True)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    [only] = manifest["spec"]["template"]["spec"]["containers"]
    return only


def test_training_runs_as_a_valid_job_under_torchrun(cluster, shared: dict[str, Any]) -> None:
    stub, executor = cluster
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    # Pending long enough that the log follower sees it at its poll interval even on a busy machine
    stub.script = lambda manifest: PodScript(log=b"epoch 1 loss 0.9\nepoch 2 loss 0.7\n", exit_code=0, pending_s=2.0)
    run = training_run(paths, shared["data_roots"][0])
    execution = executor.start(run)
    assert finish(execution) == 0

    [manifest] = stub.created  # exactly what went over the wire
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)  # raises ValidationError
    name = manifest["metadata"]["name"]
    assert DNS1123.match(name) and len(name) <= DNS1123_LABEL_MAX
    assert execution.description == f"Kubernetes Job lomar/{name}"
    assert manifest["metadata"]["namespace"] == "lomar"
    assert manifest["spec"]["backoffLimit"] == 0 and manifest["spec"]["ttlSecondsAfterFinished"] > 0
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "lomar" and labels["lomar/job-id"] == JOB_ID
    assert labels["lomar/stage"] == "training" and manifest["spec"]["template"]["metadata"]["labels"] == labels
    pod = manifest["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "lomar-worker"
    stage = container(manifest)
    assert stage["image"] == "registry.example/lomar-worker:1.0" and stage["workingDir"] == str(paths.job_dir)
    assert stage["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"},
                                  "limits": {"memory": "32Gi", "nvidia.com/gpu": "4"}}
    # the shared volumes at the worker's own paths, so the command's paths mean the same in the pod
    claims = {volume["name"]: volume["persistentVolumeClaim"]["claimName"] for volume in pod["volumes"]
              if "persistentVolumeClaim" in volume}
    mounts = {mount["mountPath"]: (claims.get(mount["name"]), mount.get("subPath"), mount.get("readOnly", False))
              for mount in stage["volumeMounts"]}
    assert mounts[str(shared["jobs_dir"])] == ("lomar-jobs", None, False)
    assert mounts[str(shared["model_repository"])] == ("lomar-shared", "models", False)
    assert mounts[str(shared["data_roots"][0])] == ("lomar-data", None, True)
    # torchrun (python -m torch.distributed.run), one process per GPU, running the job's own training command
    command = stage["command"]
    assert command[:3] == ["python", "-m", "torch.distributed.run"]
    torchrun = pytest.importorskip("torch.distributed.run")
    args = torchrun.get_args_parser().parse_args(command[3:])
    assert (args.nproc_per_node, args.standalone, args.module) == ("4", True, True)
    assert [args.training_script, *args.training_script_args] == list(run.command[2:])

    log = paths.log.read_text()
    assert "training runs as Kubernetes Job lomar/" in log and "pod " + name in log  # pending noted
    assert log.index("runs as Kubernetes Job") < log.index("epoch 1 loss 0.9\nepoch 2 loss 0.7\n")
    assert stub.authorization == {"Bearer worker-token"}  # the kubeconfig's credentials were used


def test_a_failed_job_gives_its_exit_code_and_its_pod_log(cluster, shared: dict[str, Any]) -> None:
    stub, executor = cluster
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    stub.script = lambda manifest: PodScript(log=b"exporting\nRuntimeError: the export broke\n", exit_code=2)
    command = export_command(JobPlan(kind="finetune", data_dir="/d", model_name="lomar_classifier", epochs=1),
                             paths, shared["model_repository"], 112, "/usr/bin/python3")
    execution = executor.start(StageRun(JOB_ID, "export", tuple(command), paths.log, paths.job_dir))
    assert finish(execution) == 2
    [manifest] = stub.created
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    stage = container(manifest)
    assert stage["command"] == ["python", *command[1:]]  # no torchrun and no GPU outside training
    assert "nvidia.com/gpu" not in stage["resources"].get("limits", {})
    log = paths.log.read_text()
    assert "exporting\nRuntimeError: the export broke\n" in log
    assert re.search(r"failed: BackoffLimitExceeded: .*; pod \S+ exited with code 2\n", log)


def test_a_worker_reports_a_failed_kubernetes_stage(cluster, shared: dict[str, Any]) -> None:
    """A worker's stages go through JobSettings.executor; the job fails naming the stage's own error line."""
    stub, executor = cluster
    stub.script = lambda manifest: PodScript(log=b"ValueError: no images in /data/base\n", exit_code=1)
    (shared["data_roots"][0] / "base").mkdir(parents=True)
    store = LifecycleStore(shared["jobs_dir"] / "lifecycle.sqlite")
    queue = JobQueue(store, QueueSettings(jobs_dir=shared["jobs_dir"]))
    plan = JobRequest(data_dir="base", model="lomar_tiny_patch16", epochs=1).plan(
        DataRoots.of(shared["data_roots"]), shared["jobs_dir"])
    job = queue.submit(plan)
    worker = Worker(store, JobSettings(jobs_dir=shared["jobs_dir"], model_repository=shared["model_repository"],
                                       poll_interval_s=0.05, claim_interval_s=0.05, executor=executor), "w1")
    worker.start()
    try:
        wait_for(lambda: queue.get(job.id).finished)
    finally:
        worker.stop()
    record = queue.get(job.id)
    assert (record.state, record.stage) == ("failed", "train")
    assert record.message == "training failed with exit code 1: ValueError: no images in /data/base"
    assert len(stub.created) == 1


def test_terminate_deletes_the_job_while_its_log_streams(cluster, shared: dict[str, Any]) -> None:
    stub, executor = cluster
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    stub.script = lambda manifest: PodScript(log=b"step 1 loss 2.3\n", exit_code=None)  # runs until deleted
    execution = executor.start(training_run(paths, shared["data_roots"][0]))
    wait_for(lambda: "step 1 loss 2.3" in paths.log.read_text())  # copied while the pod runs
    assert execution.wait(0.1) is None
    execution.terminate(grace_s=5.0)
    [delete] = stub.deletes
    assert delete["name"] == stub.created[0]["metadata"]["name"]
    assert delete["query"].get("propagationPolicy") == "Foreground"  # the pod goes with it
    assert stub.live_jobs() == []
    assert finish(execution) < 0  # stopped, like a signalled process
    assert "deleted (stopping the stage)" in paths.log.read_text()


def test_waiting_through_a_slow_deletion_polls_at_the_poll_interval(cluster, shared: dict[str, Any]) -> None:
    """The runner waits in one thread while a cancel terminates from another; the Job takes a while to go."""
    stub, executor = cluster
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    stub.script = lambda manifest: PodScript(exit_code=None, deletion_s=1.0)
    execution = executor.start(training_run(paths, shared["data_roots"][0]))
    wait_for(lambda: execution.wait(0.05) is None and bool(stub.live_jobs()))
    codes: list[int] = []
    waiter = threading.Thread(target=lambda: codes.append(finish(execution)))
    waiter.start()
    before = len(stub.requests)
    execution.terminate(grace_s=5.0)
    waiter.join(10.0)
    assert codes and codes[0] < 0
    # ~1 s at a 0.05 s poll interval: about 40 requests; one that stops sleeping makes hundreds
    assert len(stub.requests) - before < 80


def test_a_job_left_running_by_a_dead_worker_is_deleted_before_the_stage_runs_again(cluster,
                                                                                     shared: dict[str, Any]) -> None:
    stub, executor = cluster
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    stub.script = lambda manifest: PodScript(exit_code=None)
    first = executor.start(training_run(paths, shared["data_roots"][0]))  # its worker dies: nobody stops it
    second = executor.start(training_run(paths, shared["data_roots"][0]))
    first_name, second_name = (manifest["metadata"]["name"] for manifest in stub.created)
    assert first_name != second_name and [d["name"] for d in stub.deletes] == [first_name]
    assert [job.name for job in stub.live_jobs()] == [second_name]
    assert "left running by an earlier attempt" in paths.log.read_text()
    assert finish(first) == 1  # a handle still held on the old attempt sees its stage lost
    assert "was deleted by someone else" in paths.log.read_text()
    second.terminate(grace_s=5.0)
    assert finish(second) < 0


def test_a_refused_job_is_an_executor_error_with_the_api_message(cluster, shared: dict[str, Any]) -> None:
    stub, executor = cluster
    stub.refuse_create = 'jobs.batch is forbidden: User "system:serviceaccount:lomar:lomar-worker" cannot create'
    paths = JobFiles(shared["jobs_dir"] / JOB_ID)
    paths.job_dir.mkdir(parents=True)
    with pytest.raises(ExecutorError, match="403 jobs.batch is forbidden"):
        executor.start(training_run(paths, shared["data_roots"][0]))


@pytest.mark.parametrize("gpus", [0, 1])
def test_training_on_at_most_one_gpu_runs_without_torchrun(gpus: int, paths: JobFiles, tmp_path: Path) -> None:
    run = training_run(paths, tmp_path / "data")
    manifest = job_manifest(JobTemplate(image="lomar-worker:1", gpus=gpus), run, "lomar-job-training-abc")
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert container(manifest)["command"] == ["python", *run.command[1:]]
    assert container(manifest).get("resources", {}).get("limits", {}).get("nvidia.com/gpu") == (str(gpus) if gpus
                                                                                                  else None)


def test_only_python_module_commands_run_as_kubernetes_jobs(paths: JobFiles) -> None:
    with pytest.raises(ExecutorError, match="runs `python -m MODULE ...` commands"):
        job_manifest(JobTemplate(image="lomar-worker:1"), sh(paths, "true"), "lomar-job-export-abc")


@pytest.mark.parametrize(("job_id", "stage"), [("a1b2c3d4e5f6", "verification"), ("X" * 80, "Train_Stage.v2")])
def test_job_names_are_dns1123_labels(job_id: str, stage: str, tmp_path: Path) -> None:
    name = job_name(StageRun(job_id, stage, ("python", "-m", "x"), tmp_path / "log", tmp_path))
    assert DNS1123.match(name) and len(name) <= DNS1123_LABEL_MAX


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOMAR_EXECUTOR", "kubernetes")
    with pytest.raises(ValidationError, match="LOMAR_K8S_IMAGE, LOMAR_K8S_PVC_JOBS, LOMAR_K8S_PVC_MODEL_REPOSITORY"):
        ExecutorSettings()
    monkeypatch.setenv("LOMAR_K8S_IMAGE", "lomar-worker:1")
    monkeypatch.setenv("LOMAR_K8S_PVC_JOBS", "shared:jobs")
    monkeypatch.setenv("LOMAR_K8S_PVC_MODEL_REPOSITORY", "shared:models")
    monkeypatch.setenv("LOMAR_K8S_PVC_DATA", "data-a, data-b:images/b")
    monkeypatch.setenv("LOMAR_K8S_NODE_SELECTOR", '{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}')
    settings = ExecutorSettings()
    assert settings.k8s_pvc_data == ("data-a", "data-b:images/b")
    template = settings.job_template(Path("/s/jobs"), Path("/s/models"), (Path("/data/a"), Path("/data/b")))
    assert [(m.claim, m.sub_path, str(m.path), m.read_only) for m in template.mounts] == [
        ("shared", "jobs", "/s/jobs", False), ("shared", "models", "/s/models", False),
        ("data-a", "", "/data/a", True), ("data-b", "images/b", "/data/b", True)]
    with pytest.raises(ExecutorError, match="2 claims for 1 data roots"):
        make_executor(settings, jobs_dir=Path("/s/jobs"), model_repository=Path("/s/models"),
                      data_roots=(Path("/data/a"),))
    monkeypatch.setenv("LOMAR_K8S_GPUS", "-1")
    with pytest.raises(ValidationError, match="k8s_gpus"):
        ExecutorSettings()
