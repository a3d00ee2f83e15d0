"""The control plane's app: the admin API behind its guard, health, and a typed OpenAPI document."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lomar_serve.control_plane.app import create_control_app
from lomar_serve.control_plane.settings import ControlPlaneSettings
from tests.lomar_serve.control_plane.conftest import AUTH, TOKEN


@pytest.fixture
def control(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "repo").mkdir()
    settings = ControlPlaneSettings(model_repository=tmp_path / "repo", triton_urls="127.0.0.1:9", admin_token=TOKEN,
                                    jobs_dir=tmp_path / "jobs", data_roots=(tmp_path,))
    with TestClient(create_control_app(settings)) as client:  # runs the lifespan: the lifecycle starts
        yield client


def test_health_and_admin_routes(control: TestClient) -> None:
    assert control.get("/healthz").json() == {"status": "ok"}
    assert control.get("/readyz").json() == {"status": "ok"}
    assert control.get("/v1/admin/jobs").status_code == 401
    assert control.get("/v1/admin/jobs", headers=AUTH).json() == {"jobs": []}
    assert control.post("/v1/classify").status_code == 404  # no inference here: that is the gateway's


def test_the_token_is_checked_before_the_body(control: TestClient) -> None:
    response = control.post("/v1/admin/jobs", content=b"{" * 100_000, headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_openapi_document_is_typed(control: TestClient) -> None:
    document = control.get("/openapi.json").json()
    deploy = document["components"]["schemas"]["DeployRequest"]["properties"]["version"]
    assert deploy["minimum"] == 1 and deploy["maximum"] == 999_999_999
    for path, operation in (("/v1/admin/jobs", "get"), ("/v1/admin/models/{name}", "get")):
        responses = document["paths"][path][operation]["responses"]
        assert {"401", "403"} <= set(responses) and "$ref" in responses["200"]["content"]["application/json"]["schema"]
    response = control.request("OPTIONS", "/v1/admin/jobs")
    assert response.status_code == 405 and {"GET", "POST"} <= set(response.headers["allow"].replace(" ", "").split(","))
