"""The console's routes: its page and files under a security policy, only listed files served, a login form that
posts nothing, and the job form's choices (data sets under the roots, training settings with their help)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lomar_serve.control_plane.app import create_control_app
from lomar_serve.control_plane.console import FILES
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.jobs.paths import DataRoots
from tests.lomar_serve.control_plane.conftest import AUTH, TOKEN
from tests.lomar_serve.tiny_models import synthetic_set


@pytest.fixture
def control(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "repo").mkdir()
    data = tmp_path / "data"
    synthetic_set(data / "shapes", classes=2, per_class=2, val_per_class=1)
    settings = ControlPlaneSettings(model_repository=tmp_path / "repo", triton_urls="127.0.0.1:9", admin_token=TOKEN,
                                    jobs_dir=tmp_path / "jobs", data_roots=(data,))
    with TestClient(create_control_app(settings)) as client:
        yield client


def test_the_page_and_its_files_are_served_under_a_security_policy(control: TestClient) -> None:
    page = control.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    linked = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page.text))
    assert linked == {"common.css", "common.js", *(name for name in FILES if name != "console.html")}
    for name in linked:
        response = control.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-security-policy"] == policy, name
    assert "<script>" not in page.text and " style=" not in page.text  # the policy allows no inline code
    assert control.get("/docs").status_code == 200  # Swagger's own files still come from /static/swagger-ui


def test_only_listed_files_are_served(control: TestClient) -> None:
    for name in ("console.html", "..%2Fconsole.py", "routes.py", "nope.js", "search.js"):
        response = control.get(f"/static/{name}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", name


def test_the_login_form_posts_no_field_and_never_by_get(control: TestClient) -> None:
    page = control.get("/").text
    form = re.search(r'<form id="login"[^>]*>(.*?)</form>', page, re.S)
    assert form is not None and 'method="post"' in form.group(0)
    assert re.search(r"<input[^>]*\bname=", form.group(1)) is None  # a form without its script sends nothing
    answer = control.post("/", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_job_form_offers_the_data_sets_and_the_training_settings(control: TestClient) -> None:
    assert control.get("/v1/admin/job-form").status_code == 401
    form = control.get("/v1/admin/job-form", headers=AUTH).json()
    assert form["datasets"] == [{"path": "shapes", "classes": ["class_000_circle", "class_001_square"],
                                 "splits": True}]
    assert "lomar_tiny_patch16" in form["architectures"]
    assert form["model_names"] == {"finetune": "lomar_classifier", "pretrain": "lomar_reconstruction"}
    settings = {option["name"]: option for option in form["options"]["finetune"]}
    assert settings["blr"]["type"] == "float" and settings["blr"]["help"] and settings["blr"]["common"]
    assert settings["device"]["choices"] == ["auto", "cpu", "cuda"]
    assert "epochs" not in settings and "data_dir" not in settings  # the job sets these itself
    assert "mask_ratio" in {option["name"] for option in form["options"]["pretrain"]}


def test_data_sets_are_found_under_the_roots_and_not_beyond(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    synthetic_set(root / "a" / "nested", classes=2, per_class=1, val_per_class=1)
    synthetic_set(root / "b", classes=3, per_class=1, val_per_class=1)
    for split in ("train", "val"):  # a class layout without splits
        (root / "flat").mkdir(exist_ok=True)
        for path in (root / "b" / split).iterdir():
            (root / "flat" / f"{split}_{path.name}").symlink_to(path)
    synthetic_set(elsewhere / "hidden", classes=2, per_class=1, val_per_class=1)
    (root / "link_out").symlink_to(elsewhere)
    (root / "empty" / "x").mkdir(parents=True)
    found = {dataset.path: dataset for dataset in DataRoots.of([root]).datasets()}
    assert sorted(found) == ["a/nested", "b", "flat"]
    assert found["b"].splits and len(found["b"].classes) == 3 and not found["flat"].splits
    both = [dataset.path for dataset in DataRoots.of([root, elsewhere]).datasets()]
    assert str(elsewhere / "hidden") in both and "link_out/hidden" in both  # a second root's: absolute


def test_model_status_carries_each_version_card(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.lomar_serve.tiny_models import export_tiny
    repo = tmp_path / "repo"
    export_tiny(repo, tmp_path, ["cat", "dog"], seed=0)
    settings = ControlPlaneSettings(model_repository=repo, triton_urls="127.0.0.1:9", admin_token=TOKEN,
                                    jobs_dir=tmp_path / "jobs")
    (repo / "lomar_classifier" / "2").mkdir()  # a version without a card
    with TestClient(create_control_app(settings)) as client:
        status = client.get("/v1/admin/models/lomar_classifier", headers=AUTH).json()
    assert status["cards"]["1"]["classes"] == ["cat", "dog"] and status["cards"]["2"] is None
