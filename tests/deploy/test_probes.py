"""Every health check and probe in the deployment files asks a route the process really has."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import lomar_serve
from lomar_serve.gateway.api.routes.health import router as gateway_health
from tests.deploy.fleet import COMPOSE_FILE, KUBERNETES_DIR, dockerfile_stages, yaml_documents


def route_paths(routes: list) -> set[str]:
    """The paths of the routes declared directly (included routers are not health routes)."""
    return {route.path for route in routes if hasattr(route, "path")}


def probe_paths(container: dict) -> set[str]:
    return {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
            if probe in container}


def deployment_container(name: str) -> dict:
    [deployment] = [doc for doc in yaml_documents(KUBERNETES_DIR / f"{name}.yaml")
                    if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def control_plane_routes() -> set[str]:
    if not (Path(lomar_serve.__file__).parent / "control_plane").is_dir():
        pytest.skip("lomar_serve.control_plane (the fleet's control plane) is not in this tree yet")
    from lomar_serve.control_plane.app import create_control_app
    from lomar_serve.control_plane.settings import ControlPlaneSettings

    settings = ControlPlaneSettings(admin_token="probe-test-" + "0" * 32, triton_urls=("triton:8000",))  # builds, starts nothing
    return route_paths(create_control_app(settings).routes)


def test_gateway_probes() -> None:
    routes = route_paths(gateway_health.routes)
    healthcheck = dockerfile_stages()["serving"].values("HEALTHCHECK")[-1]
    image_probe = json.loads(healthcheck.split("CMD", 1)[1])[1]
    assert {image_probe} | probe_paths(deployment_container("gateway")) <= routes


def test_control_plane_probes() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    compose_probe = urlsplit(compose["services"]["control-plane"]["healthcheck"]["test"][-1]).path
    assert {compose_probe} | probe_paths(deployment_container("control-plane")) <= control_plane_routes()
