"""One model-name rule at every entry point: export, the gateway's settings and `model` parameter, the admin API's
deploy path and the lifecycle accept and refuse exactly the same names, so what can be exported can be served and
deployed. (The end-to-end check, a dotted 64-character name exported, loaded by Triton and deployed, is in
tests/lomar_serve/control_plane/test_deploy.py.)"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from contracts.model_repository import MAX_VERSION, MODEL_NAME_MAX_LENGTH, is_model_name, is_version
from export.errors import ExportError
from export.pipeline import ExportOptions
from lomar_serve.control_plane import routes as admin_routes
from lomar_serve.common.error_handlers import install_error_handlers
from lomar_serve.control_plane.service import Lifecycle
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from lomar_serve.jobs.errors import InvalidName
from lomar_serve.jobs.paths import DataRoots, check_model_name
from lomar_serve.jobs.spec import JobRequest
from tests.lomar_serve.fake_backend import FakeBackend
from tests.lomar_serve.photos import photo_bytes

LONGEST = "a." + "x" * (MODEL_NAME_MAX_LENGTH - 2)
VALID = ["a", "Z", "7", "lomar_classifier", "a.b", "resnet.v2-final_3", "A-1_b", LONGEST]
# Invalid names that can be one URL path segment, and those that cannot ("." and ".." are resolved by the URL).
INVALID_SEGMENTS = [".hidden", "-a", "_a", "a b", "a:b", "é", "a+b", "a\\b", LONGEST + "x"]
INVALID = ["", ".", "..", "a/b", "../x", "a\x00", *INVALID_SEGMENTS]
TOKEN = "naming-rule-token-0123"


def test_the_table_follows_the_rule() -> None:
    assert all(is_model_name(name) for name in VALID) and not any(is_model_name(name) for name in INVALID)
    assert len(LONGEST) == MODEL_NAME_MAX_LENGTH and not is_model_name(None) and not is_model_name(1)


@pytest.mark.parametrize("name", VALID + INVALID)
def test_export_settings_and_lifecycle_agree(name: str, tmp_path: Path) -> None:
    outcomes = {}
    try:
        ExportOptions(checkpoint=tmp_path / "x.pth", task="classify", out=tmp_path / "repo", name=name)
        outcomes["export"] = True
    except ExportError as error:
        assert "model name" in str(error)
        outcomes["export"] = False
    try:
        Settings(model_repository=tmp_path, default_classifier=name, default_reconstructor=name)
        outcomes["settings"] = True
    except ValidationError:
        outcomes["settings"] = False
    try:
        check_model_name(name)
        outcomes["lifecycle"] = True
    except InvalidName:
        outcomes["lifecycle"] = False
    (tmp_path / "data" / "set").mkdir(parents=True, exist_ok=True)
    try:
        JobRequest(data_dir="set", model="lomar_tiny_patch16", model_name=name).plan(
            DataRoots.of([tmp_path / "data"]), tmp_path / "jobs")
        outcomes["job"] = True
    except InvalidName:
        outcomes["job"] = False
    assert outcomes == dict.fromkeys(outcomes, is_model_name(name)), outcomes


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    settings = Settings(model_repository=tmp_path_factory.mktemp("repo"), default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor")
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        yield client


@pytest.mark.parametrize("name", VALID + INVALID)
def test_gateway_model_parameter(gateway: TestClient, name: str) -> None:
    """A valid name reaches the backend (which knows only its fake models: 404); an invalid one is a 422."""
    response = gateway.post(f"/v1/classify?model={quote(name, safe='')}", content=photo_bytes("coffee"),
                            headers={"content-type": "image/jpeg"})
    expected = (404, "model_not_found") if is_model_name(name) else (422, "invalid_parameter")
    assert (response.status_code, response.json()["error"]["code"]) == expected, response.text


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    work = tmp_path_factory.mktemp("admin")
    (work / "repo").mkdir()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(admin_routes.router)
    app.state.lifecycle = Lifecycle(ControlPlaneSettings(model_repository=work / "repo", triton_urls=("127.0.0.1:9",),
                                                         admin_token=TOKEN, jobs_dir=work / "jobs"))
    return TestClient(app)


@pytest.mark.parametrize("name", VALID + INVALID_SEGMENTS)
def test_admin_deploy_path(admin_api: TestClient, name: str) -> None:
    """A valid name reaches the deployer (no such version in the empty repository: 404); an invalid one is a 422."""
    response = admin_api.post(f"/v1/admin/models/{quote(name, safe='')}/deploy", json={"version": 1},
                              headers={"Authorization": f"Bearer {TOKEN}"})
    expected = (404, "version_not_found") if is_model_name(name) else (422, "invalid_parameter")
    assert (response.status_code, response.json()["error"]["code"]) == expected, response.text


def test_versions_are_positive_integers_up_to_max_version() -> None:
    assert is_version(1) and is_version("12") and is_version(MAX_VERSION) and is_version(str(MAX_VERSION))
    assert not any(is_version(bad) for bad in (0, -1, "01", "1.5", "x", True, None, MAX_VERSION + 1, "1/.."))
