"""deploy/kubernetes: every manifest valid against the Kubernetes schemas, the kustomization complete, names and
commands consistent with the images and the fleet's entry points.

No cluster and no kustomize binary run here: each manifest is validated on its own with kubernetes-validate in
strict mode (unknown fields are errors) for a recent Kubernetes, and what kustomize would resolve (file list,
generated Secret, references between objects) is checked below.
"""
from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dotenv import dotenv_values

from lomar_serve.cli import COMMANDS
from tests.deploy.fleet import (ENTRY_POINTS, KUBERNETES_DIR, dockerfile_stages, fleet_triton_flags, git_ignores,
                                stage_env, yaml_documents)

KUBERNETES_VERSION = "1.34"
KUSTOMIZATION = KUBERNETES_DIR / "kustomization.yaml"
JOB_TEMPLATE = ("lomar-job-template", "job.yaml")  # ConfigMap name, key holding the batch/v1 Job


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES_DIR.glob("*.yaml") if path != KUSTOMIZATION)


def resources() -> list[dict]:
    """Every object of every manifest, plus the Job held by the job-template ConfigMap."""
    found = [doc for path in manifest_files() for doc in yaml_documents(path)]
    for doc in list(found):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == JOB_TEMPLATE[0]:
            found.append(yaml.safe_load(doc["data"][JOB_TEMPLATE[1]]))
    return found


def find(kind: str, name: str) -> dict:
    matches = [doc for doc in resources() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs() -> dict[str, dict]:
    """The pod template of every Deployment and Job, by "Kind/name"."""
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc["spec"]["template"]["spec"]
            for doc in resources() if doc["kind"] in ("Deployment", "Job")}


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load(KUSTOMIZATION.read_text())


@pytest.mark.parametrize("resource", resources(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_manifest_is_valid_strict(resource: dict) -> None:
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{'.'.join(map(str, error.path))}: {error.message}")


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(find("Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest(kustomization: dict) -> None:
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(path.name for path in manifest_files())


def test_the_secret_is_generated_from_an_ignored_file(kustomization: dict) -> None:
    """The Secret comes from secrets.env (git-ignored, made by the operator from the committed example, which holds
    no token); its keys are exactly the ones the pods read."""
    [generator] = kustomization["secretGenerator"]
    [env_file] = generator["envs"]
    assert git_ignores(KUBERNETES_DIR / env_file)
    example = dotenv_values(KUBERNETES_DIR / f"{env_file}.example")
    assert example["LOMAR_ADMIN_TOKEN"] == ""
    referenced = {(ref["name"], ref["key"]) for spec in pod_specs().values() for container in spec["containers"]
                  for variable in container.get("env", []) if "secretKeyRef" in variable.get("valueFrom", {})
                  for ref in [variable["valueFrom"]["secretKeyRef"]]}
    assert referenced == {(generator["name"], key) for key in example}


def test_references_resolve() -> None:
    """ConfigMaps, claims and service accounts named by pods exist; Services select pods and name their ports."""
    for where, spec in pod_specs().items():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        if "serviceAccountName" in spec:
            find("ServiceAccount", spec["serviceAccountName"])
        for container in spec["containers"] + spec.get("initContainers", []):
            for source in container.get("envFrom", []):
                find("ConfigMap", source["configMapRef"]["name"])
            mounted = {mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounted <= {volume["name"] for volume in spec.get("volumes", [])}, where
    deployments = {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == "Deployment"}
    for service in (doc for doc in resources() if doc["kind"] == "Service"):
        selected = [deployment for deployment in deployments.values()
                    if service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = {port["name"] for container in selected[0]["spec"]["template"]["spec"]["containers"]
                 for port in container.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    hpa = find("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


def test_settings_match_the_images_and_the_claims() -> None:
    """The shared folders are mounted where the images' LOMAR_* settings say, in every pod, and the executor's
    claim names are the real claims."""
    settings = find("ConfigMap", "lomar-settings")["data"]
    env = stage_env(dockerfile_stages(), "worker")
    folders = {name: settings[name] for name in ("LOMAR_MODEL_REPOSITORY", "LOMAR_JOBS_DIR", "LOMAR_DATA_ROOTS")}
    assert folders == {name: env[name] for name in folders}
    claims = {"LOMAR_MODEL_REPOSITORY": settings["LOMAR_K8S_PVC_MODEL_REPOSITORY"],
              "LOMAR_JOBS_DIR": settings["LOMAR_K8S_PVC_JOBS"], "LOMAR_DATA_ROOTS": settings["LOMAR_K8S_PVC_DATA"]}
    for claim in claims.values():
        find("PersistentVolumeClaim", claim)
    for where, spec in pod_specs().items():
        volume_claims = {volume["name"]: volume["persistentVolumeClaim"]["claimName"]
                         for volume in spec.get("volumes", []) if "persistentVolumeClaim" in volume}
        for container in spec["containers"] + spec.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                if mount["name"] in volume_claims:
                    setting = next(name for name, claim in claims.items() if claim == volume_claims[mount["name"]])
                    assert mount["mountPath"] == folders[setting], f"{where}: {mount['name']}"


def test_containers_run_the_fleet_entry_points() -> None:
    settings = find("ConfigMap", "lomar-settings")["data"]
    roles = {}
    for where, spec in pod_specs().items():
        for container in spec["containers"] + spec.get("initContainers", []):
            command = container["command"] + container.get("args", [])
            if command[0] == "lomar":
                assert command[1] in ENTRY_POINTS, f"{where}: `lomar {command[1]}` is not a lomar command"
                roles[where] = command[1]
            elif command[0] == "tritonserver":
                assert fleet_triton_flags(settings["LOMAR_MODEL_REPOSITORY"]) <= set(command[1:]), where
            elif command[0] == "torchrun":
                module = command[command.index("-m") + 1]
                assert module in {target.partition(":")[0] for target, _ in COMMANDS.values()}, where
                roles[where] = "torchrun"
            else:
                assert command == ["seed-model-repository"], f"{where}: unexpected command {command}"
    assert roles == {"Deployment/gateway": "gateway", "Deployment/control-plane": "control-plane",
                     "Deployment/worker": "worker", "Job/lomar-job-0123abcd-train": "torchrun"}


def test_roles() -> None:
    """Gateways scale (2+ replicas, probes on /readyz and /healthz); one control plane, never two at once; Triton and
    the training Job ask for a GPU; Triton and the control plane are not exposed outside the cluster."""
    gateway = find("Deployment", "gateway")
    assert gateway["spec"]["replicas"] >= 2 and find("HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] >= 2
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "cpu" in container["resources"]["requests"]  # the HorizontalPodAutoscaler's CPU utilisation needs it
    secrets = {entry["name"]: entry["valueFrom"]["secretKeyRef"]["key"] for entry in container["env"]
               if "valueFrom" in entry}
    assert secrets.get("LOMAR_SEARCH_PG_URL") == "LOMAR_SEARCH_PG_URL"  # replicas share the collections
    assert find("ConfigMap", "lomar-settings")["data"]["LOMAR_SEARCH_ENGINE"] == "pgvector"
    control = find("Deployment", "control-plane")
    assert control["spec"]["replicas"] == 1 and control["spec"]["strategy"]["type"] == "Recreate"
    for kind, name in (("Deployment", "triton"), ("Job", "lomar-job-0123abcd-train")):
        [container] = pod_specs()[f"{kind}/{name}"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1, name
    for name in ("triton", "control-plane"):
        assert find("Service", name)["spec"]["type"] == "ClusterIP"
    job = find("Job", "lomar-job-0123abcd-train")["spec"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"


def test_pods_run_as_the_images_non_root_user() -> None:
    user = int(dockerfile_stages()["serving"].values("USER")[-1].split(":")[0])
    for where, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == user, where


def test_the_worker_may_run_jobs_and_nothing_more() -> None:
    role = find("Role", "lomar-worker")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("batch", "jobs", verb) for verb in ("create", "get", "delete")} | {("", "pods/log", "get"),
                                                                                ("", "pods", "list")}
    assert needed <= granted
    assert not any(verb in ("*", "update", "patch", "deletecollection") for _, _, verb in granted)
    binding = find("RoleBinding", "lomar-worker")
    assert binding["roleRef"]["name"] == "lomar-worker"
    assert find("Deployment", "worker")["spec"]["template"]["spec"]["serviceAccountName"] == \
        binding["subjects"][0]["name"]


def test_the_worker_image_reaches_the_executor(kustomization: dict) -> None:
    """The replacement copies the worker Deployment's image into the ConfigMap key the executor reads."""
    [replacement] = kustomization["replacements"]
    assert replacement["source"]["name"] == "worker"
    [target] = replacement["targets"]
    find(target["select"]["kind"], target["select"]["name"])
    for path in target["fieldPaths"]:
        assert path.split(".", 1)[1] in find("ConfigMap", "lomar-settings")["data"]
