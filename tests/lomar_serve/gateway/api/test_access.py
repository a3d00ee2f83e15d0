"""Who may do what on a gateway (gateway/access.py), over real HTTP requests to the app with keys published as the
control plane publishes them: open scopes, keys and their scopes, revocation, rate limits with Retry-After, the
collections quota, and the OpenAPI document saying which routes need a key. The inference backend is the FAKE one
(tests/lomar_serve/fake_backend.py): nothing here depends on a model; the fleet test drives real keys end to end."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.model_repository import API_KEYS_FILE
from lomar_serve.common.api_keys import KeyGrant, new_key, publish_grants
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from tests.lomar_serve.fake_backend import FakeBackend
from tests.lomar_serve.photos import photo_bytes

RELOAD_S = 0.05


class Keys:
    """Keys published in the gateway's repository, as the control plane would."""

    def __init__(self, repository: Path) -> None:
        self.path = repository / API_KEYS_FILE
        self.grants: dict[str, KeyGrant] = {}

    def add(self, *scopes: str, **quotas: Any) -> str:
        key_id, key, digest = new_key()
        self.grants[key_id] = KeyGrant(key_id, "test", scopes, digest, **quotas)
        self._publish()
        return key

    def revoke(self, key: str) -> None:
        del self.grants[key.split("_")[1]]
        self._publish()

    def _publish(self) -> None:
        publish_grants(self.path, self.grants.values())
        time.sleep(RELOAD_S * 2)  # the gateway looks again after its reload interval


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, Keys]]]:
    clients: list[TestClient] = []

    def start(**settings: Any) -> tuple[TestClient, Keys]:
        repository = tmp_path / f"repo{len(clients)}"
        repository.mkdir()
        app = create_app(Settings(model_repository=repository, default_classifier="fake_classifier",
                                  default_reconstructor="fake_reconstructor", search_dir=tmp_path / "collections",
                                  api_keys_reload_s=RELOAD_S, **settings), backend=FakeBackend())
        client = TestClient(app).__enter__()
        clients.append(client)
        return client, Keys(repository)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error(response: Any, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and all(word in body["message"] for word in words), body


def classify(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/classify", content=photo_bytes("coffee"), headers={"Content-Type": "image/jpeg",
                                                                               **(headers or {})})


def test_by_default_inference_and_reads_are_open_and_collection_writes_need_a_key(gateway) -> None:
    client, keys = gateway()
    assert classify(client).status_code == 200
    assert classify(client, bearer("not-needed")).status_code == 200  # OpenAI clients send a placeholder
    assert client.get("/v1/collections").status_code == 200
    refused = client.post("/v1/collections", json={"name": "pics"})
    error(refused, 401, "unauthorized", "collections:write", "lomar keys create")
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    error(client.delete("/v1/collections/pics"), 401, "unauthorized")
    reader = keys.add("collections:read")
    error(client.post("/v1/collections", json={"name": "pics"}, headers=bearer(reader)), 403, "forbidden",
          "collections:write")
    writer = keys.add("collections:write", "collections:read")
    assert client.post("/v1/collections", json={"name": "pics"}, headers=bearer(writer)).status_code == 201
    assert client.get("/v1/collections").json()["collections"][0]["name"] == "pics"
    # A well-formed key that is unknown or revoked is refused even where no key is needed.
    keys.revoke(writer)
    error(client.get("/v1/collections", headers=bearer(writer)), 403, "forbidden", "not valid")
    error(client.delete("/v1/collections/pics", headers=bearer(writer)), 403, "forbidden")
    assert client.get("/v1/collections/pics").status_code == 200  # nothing deleted


def test_a_closed_gateway_needs_a_key_with_the_scope_for_everything(gateway) -> None:
    client, keys = gateway(open_scopes=())
    error(classify(client), 401, "unauthorized", "infer")
    error(client.get("/v1/models"), 401, "unauthorized")
    error(client.get("/v1/collections"), 401, "unauthorized")
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200  # probes and the page
    inference = keys.add("infer")
    assert classify(client, bearer(inference)).status_code == 200
    error(client.get("/v1/collections", headers=bearer(inference)), 403, "forbidden", "collections:read")


def test_an_opened_gateway_takes_collection_writes_without_a_key(gateway) -> None:
    client, _ = gateway(open_scopes=("infer", "collections:read", "collections:write"))
    assert client.post("/v1/collections", json={"name": "open"}).status_code == 201


def test_rate_limits_answer_429_with_retry_after(gateway) -> None:
    client, keys = gateway(anonymous_rate_per_minute=3)
    limited = keys.add("infer", rate_per_minute=2)
    assert [classify(client, bearer(limited)).status_code for _ in range(2)] == [200, 200]
    refused = classify(client, bearer(limited))
    error(refused, 429, "rate_limited", limited.split("_")[1], "2 requests per minute")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    unlimited = keys.add("infer")  # another key is not affected, and has no limit
    assert all(classify(client, bearer(unlimited)).status_code == 200 for _ in range(5))
    assert [classify(client).status_code for _ in range(4)] == [200, 200, 200, 429]  # anonymous, per address


def test_a_key_owns_at_most_its_quota_of_collections(gateway) -> None:
    client, keys = gateway()
    key = keys.add("collections:write", "collections:read", max_collections=2)
    other = keys.add("collections:write")
    for name in ("a", "b"):
        assert client.post("/v1/collections", json={"name": name}, headers=bearer(key)).status_code == 201
    error(client.post("/v1/collections", json={"name": "c"}, headers=bearer(key)), 403, "quota_exceeded",
          "at most 2 collections")
    assert client.post("/v1/collections", json={"name": "c"}, headers=bearer(other)).status_code == 201
    assert client.delete("/v1/collections/a", headers=bearer(key)).status_code == 200
    assert client.post("/v1/collections", json={"name": "d"}, headers=bearer(key)).status_code == 201
    assert sorted(c["name"] for c in client.get("/v1/collections").json()["collections"]) == ["b", "c", "d"]


def test_the_document_says_which_routes_need_a_key(gateway) -> None:
    client, _ = gateway(open_scopes=("infer",))
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/v1/classify"]["post"]["security"] == [{}, {"ApiKey": ["infer"]}]  # open: a key is optional
    assert paths["/v1/collections"]["get"]["security"] == [{"ApiKey": ["collections:read"]}]
    assert paths["/v1/collections"]["post"]["security"] == [{"ApiKey": ["collections:write"]}]
    assert paths["/v1/collections/{name}/search"]["post"]["security"] == [{"ApiKey": ["collections:read"]}]
    assert "security" not in paths["/healthz"]["get"]
    assert {"401", "403", "429"} <= set(paths["/v1/classify"]["post"]["responses"])
