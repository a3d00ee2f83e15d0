"""The admin API's API keys: created (the key shown once), listed without secrets, revoked; the file the gateways
read follows the store, and is published again by the reconcile loop when it is lost."""
from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from contracts.model_repository import API_KEYS_FILE
from lomar_serve.common.api_keys import digest_of, read_grants, split_key
from lomar_serve.jobs.ingest import job_key_name, key_job
from tests.lomar_serve.control_plane.conftest import AUTH, TOKEN, admin_app


def test_keys_are_created_once_listed_without_secrets_and_revoked(tmp_path: Path) -> None:
    app, lifecycle = admin_app(tmp_path)
    client = TestClient(app)
    published = tmp_path / "repo" / API_KEYS_FILE
    response = client.post("/v1/admin/keys", headers=AUTH, json={"name": "ingest-bot", "scopes": [
        "collections:read", "collections:write"], "max_collections": 2, "rate_per_minute": 120})
    assert response.status_code == 201, response.text
    created = response.json()
    key_id, secret = split_key(created["key"])  # type: ignore[misc]
    assert created["id"] == key_id and created["revoked_at"] is None
    grants = read_grants(published)
    assert grants[key_id].digest == digest_of(secret) and grants[key_id].max_collections == 2
    assert secret not in published.read_text()
    listed = client.get("/v1/admin/keys", headers=AUTH)
    assert listed.status_code == 200 and [key["id"] for key in listed.json()["keys"]] == [key_id]
    assert secret not in listed.text and "digest" not in listed.text and "key" not in listed.json()["keys"][0]
    revoked = client.delete(f"/v1/admin/keys/{key_id}", headers=AUTH)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert read_grants(published) == {}
    assert client.get("/v1/admin/keys", headers=AUTH).json()["keys"][0]["revoked_at"] is not None


def test_bad_key_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    app, lifecycle = admin_app(tmp_path)
    client = TestClient(app)
    good = {"name": "ci", "scopes": ["infer"]}
    for body, status in [(good, 401), ({**good, "scopes": []}, 422), ({**good, "scopes": ["admin"]}, 422),
                         ({**good, "name": "../x"}, 422), ({**good, "rate_per_minute": 0}, 422),
                         ({**good, "extra": 1}, 422)]:
        headers = {} if status == 401 else AUTH
        response = client.post("/v1/admin/keys", headers=headers, json=body)
        assert response.status_code == status, (body, response.text)
    assert client.delete("/v1/admin/keys/ffffffffffff", headers=AUTH).status_code == 404
    assert client.delete("/v1/admin/keys/..%2Fx", headers=AUTH).status_code in (404, 422)
    assert client.get("/v1/admin/keys", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 403
    assert lifecycle.store.keys() == []


def test_the_reconcile_loop_publishes_the_keys_again(tmp_path: Path) -> None:
    app, lifecycle = admin_app(tmp_path)
    client = TestClient(app)
    key_id = client.post("/v1/admin/keys", headers=AUTH, json={"name": "ci", "scopes": ["infer"]}).json()["id"]
    published = tmp_path / "repo" / API_KEYS_FILE
    published.unlink()  # lost (a hand clean-up, a disk that was full when the key was created)
    changes = lifecycle.reconciler.run_once()
    assert "API keys published: 1 active" in changes and set(read_grants(published)) == {key_id}
    assert "API keys published: 1 active" not in lifecycle.reconciler.run_once()  # in agreement: nothing written


def test_the_reconcile_loop_revokes_the_keys_of_ingest_jobs_that_no_longer_run(tmp_path: Path) -> None:
    """A worker revokes its ingest job's key when the stage ends; a killed one cannot: the control plane does."""
    app, lifecycle = admin_app(tmp_path)
    client = TestClient(app)
    ingest = {"kind": "ingest", "data_dir": "set", "collection": "photos"}
    running, ended = (client.post("/v1/admin/jobs", headers=AUTH, json=ingest).json()["id"] for _ in range(2))
    for job_id in (running, ended):
        assert lifecycle.store.claim_next("w1") is not None
    lifecycle.store.transition(ended, ("running",), "interrupted", "its worker was killed")
    keys = {name: client.post("/v1/admin/keys", headers=AUTH, json={"name": name, "scopes": ["collections:write"]}
                              ).json()["id"]
            for name in (job_key_name(running), job_key_name(ended), job_key_name("0123456789ab"), "ingest-ci")}
    changes = lifecycle.reconciler.run_once()
    gone = {keys[job_key_name(ended)], keys[job_key_name("0123456789ab")]}  # an ended job's, a job that is no more
    assert {f"API key {key_id} of ingest job {key_job(name)} revoked" for name, key_id in keys.items()
            if key_id in gone} <= set(changes), changes
    assert set(read_grants(tmp_path / "repo" / API_KEYS_FILE)) == set(keys.values()) - gone
    assert not [change for change in lifecycle.reconciler.run_once() if "revoked" in change]


def test_the_admin_document_declares_the_token_scheme(tmp_path: Path) -> None:
    app, _ = admin_app(tmp_path)
    document = app.openapi()
    assert document["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http", "scheme": "bearer", "description": "the control plane's admin token (LOMAR_ADMIN_TOKEN)"}
    operations = [operation for path in document["paths"].values() for operation in path.values()]
    assert operations and all(operation["security"] == [{"AdminToken": []}] for operation in operations)
