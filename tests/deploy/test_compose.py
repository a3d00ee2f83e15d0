"""docker-compose.yml: valid against the Compose Specification, every command a real entry point, volumes right.

`docker compose config` cannot run here (no Docker engine on the project's machines): the file is validated against
the compose-spec JSON schema (vendored by check-jsonschema) and its structure is checked below.
"""
from __future__ import annotations

import copy
import json
import re
from importlib import resources

import jsonschema
import pytest
import yaml

from tests.deploy.fleet import (COMPOSE_FILE, DOCKER_DIR, ENTRY_POINTS, FLEET_ROLES, REPO, dockerfile_stages,
                                fleet_triton_flags, git_ignores, stage_env)

SECRET_VARIABLES = ("LOMAR_ADMIN_TOKEN", "LOMAR_PG_PASSWORD")
REPOSITORY_VOLUME = "repository"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_schema() -> jsonschema.protocols.Validator:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    return jsonschema.validators.validator_for(schema)(schema)


def mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume entry, short or long syntax."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target, *mode = entry.split(":")
            found.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            found.append((entry["source"], entry["target"], bool(entry.get("read_only"))))
    return found


def entrypoint(service: dict, stages: dict) -> list[str]:
    """The service's entry point: its own, else its build target's ENTRYPOINT."""
    if "entrypoint" in service:
        return list(service["entrypoint"])
    return json.loads(stages[service["build"]["target"]].values("ENTRYPOINT")[-1])


def test_valid_against_the_compose_specification(compose: dict, compose_schema) -> None:
    errors = [f"{'/'.join(map(str, error.path))}: {error.message}" for error in compose_schema.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_a_misspelt_service_key(compose: dict, compose_schema) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["gateway-1"]["enviroment"] = {"LOMAR_PORT": "8000"}
    assert not compose_schema.is_valid(broken)


def test_the_fleet_services(compose: dict) -> None:
    assert set(compose["services"]) == {"seed-repository", "triton", "gateway-1", "gateway-2", "control-plane",
                                        "worker", "postgres"}


def test_every_lomar_service_runs_an_entry_point(compose: dict) -> None:
    stages = dockerfile_stages()
    roles = {}
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stages, f"{name}: no such Dockerfile target"
        if "build" in service and entrypoint(service, stages) == ["lomar"]:
            command = service.get("command") or json.loads(stages[service["build"]["target"]].values("CMD")[-1])
            assert command[0] in ENTRY_POINTS, f"{name}: `lomar {command[0]}` is not a lomar command"
            roles[name] = command[0]
    assert roles == {"gateway-1": "gateway", "gateway-2": "gateway", "control-plane": "control-plane",
                     "worker": "worker"}
    assert set(roles.values()) == set(FLEET_ROLES)
    assert compose["services"]["worker"]["build"]["target"] == "worker"


def test_the_other_services(compose: dict) -> None:
    """Triton gets the fleet's flags on the shared repository; the seed service runs the image's seed script."""
    services = compose["services"]
    repository = stage_env(dockerfile_stages(), "serving")["LOMAR_MODEL_REPOSITORY"]
    assert services["triton"]["entrypoint"] == ["tritonserver"]
    assert fleet_triton_flags(repository) <= set(services["triton"]["command"])
    assert services["seed-repository"]["entrypoint"] == ["seed-model-repository"]
    assert (DOCKER_DIR / "seed-model-repository.sh").is_file()
    assert services["seed-repository"]["restart"] == "no"
    # pgvector's official image (PostgreSQL with the `vector` extension): fixed pgvector and PostgreSQL versions
    assert re.fullmatch(r"pgvector/pgvector:[\d.]+-pg\d+[\w.-]*", services["postgres"]["image"])
    for name in ("gateway-1", "gateway-2"):  # the collections are shared through it
        env = services[name]["environment"]
        assert env["LOMAR_SEARCH_ENGINE"] == "pgvector" and env["LOMAR_SEARCH_PG_URL"].endswith("@postgres:5432/lomar")
        assert "postgres" in services[name]["depends_on"]


def test_volumes(compose: dict) -> None:
    declared = set(compose["volumes"])
    used = {source for service in compose["services"].values() for source, _, _ in mounts(service)}
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"unused volumes: {declared - used}"
    assert {"repository", "jobs", "data"} <= declared


def test_the_repository_is_shared_and_writable_where_it_is_written(compose: dict) -> None:
    """One volume at the images' LOMAR_MODEL_REPOSITORY everywhere; writable for the control plane (deploys), the
    worker (exports) and the gateways (holds on an old version while collections re-index); the seed service
    writes it once."""
    env = stage_env(dockerfile_stages(), "serving")
    services = compose["services"]
    for name in ("seed-repository", "triton", "gateway-1", "gateway-2", "control-plane", "worker"):
        found = [(target, read_only) for source, target, read_only in mounts(services[name])
                 if source == REPOSITORY_VOLUME]
        assert [target for target, _ in found] == [env["LOMAR_MODEL_REPOSITORY"]], name
        if name in ("seed-repository", "control-plane", "worker", "gateway-1", "gateway-2"):
            assert found[0][1] is False, f"{name} must be able to write the model repository"
    for name in ("control-plane", "worker"):
        targets = {target: read_only for source, target, read_only in mounts(services[name]) if source == "jobs"}
        assert targets == {env["LOMAR_JOBS_DIR"]: False}, name
    assert any(target == env["LOMAR_DATA_ROOTS"] and not read_only
               for source, target, read_only in mounts(services["worker"]) if source == "data")


def test_secrets_come_from_the_environment_with_no_default() -> None:
    """`${VAR:?message}` only: compose refuses to start without them; nothing like a real secret in the file."""
    text = COMPOSE_FILE.read_text()
    for variable in SECRET_VARIABLES:
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, f"{variable} is not used"
        assert all(use.startswith(":?") for use in uses), f"{variable} has a default: {uses}"
    assert git_ignores(REPO / ".env"), ".env (the secrets) must be git-ignored"


def test_published_ports(compose: dict) -> None:
    """Gateways on distinct host ports; the control plane on loopback only; Triton and PostgreSQL unpublished."""
    services = compose["services"]
    host_ports = [port for name in ("gateway-1", "gateway-2") for port in services[name]["ports"]]
    assert len({port.split(":")[0] for port in host_ports}) == 2
    assert all(port.startswith("127.0.0.1:") for port in services["control-plane"]["ports"])
    for name in ("triton", "postgres", "worker", "seed-repository"):
        assert "ports" not in services[name], f"{name} must not be published"


def test_dependencies_exist_and_can_be_met(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"
