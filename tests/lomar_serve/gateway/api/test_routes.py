"""The HTTP layer (routes, upload parsing, error contract, metrics) on a FAKE in-process backend.

Fast unit tests only; the same behaviour against the real Triton is in tests/lomar_serve/gateway/e2e/.
"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from tests.lomar_serve.gateway.api.conftest import CARD, LABELS
from tests.lomar_serve.fake_backend import NUM_CLASSES, FakeBackend
from tests.lomar_serve.photos import photo_bytes


def _raw(data: bytes, content_type: str = "image/jpeg") -> dict:
    return {"content": data, "headers": {"content-type": content_type}}


def _files(*blobs: bytes) -> dict:
    return {"files": [("image", (f"{i}.jpg", blob, "image/jpeg")) for i, blob in enumerate(blobs)]}


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


def test_classify_raw_and_multipart(client):
    jpeg = photo_bytes("astronaut")
    single = client.post("/v1/classify?top_k=3", **_raw(jpeg)).json()
    labels = single["results"][0]["labels"]
    assert [item["label"] for item in labels] == [LABELS[item["index"]] for item in labels]
    scores = [item["score"] for item in labels]
    assert len(labels) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-9
    batch = client.post("/v1/classify?top_k=3", **_files(photo_bytes("coffee"), jpeg)).json()
    assert len(batch["results"]) == 2 and batch["results"][1] == single["results"][0]
    assert batch["model"] == "fake_classifier" and batch["model_version"] == "1"


def test_batch_bigger_than_max_batch_size_is_split(client, backend):
    blobs = [photo_bytes(name) for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")]
    response = client.post("/v1/embed", **_files(*blobs))
    assert response.status_code == 200 and len(response.json()["results"]) == 6
    assert sorted(size for _, size in backend.calls) == [2, 4]


def test_embed_unit_norm_or_raw(client):
    jpeg = photo_bytes("chelsea")
    vector = np.array(client.post("/v1/embed", **_raw(jpeg)).json()["results"][0]["embedding"])
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-9
    raw = client.post("/v1/embed?normalize=false", **_raw(jpeg)).json()
    assert raw["normalized"] is False
    np.testing.assert_allclose(vector, np.array(raw["results"][0]["embedding"]) /
                               np.linalg.norm(raw["results"][0]["embedding"]), atol=1e-9)


def test_reconstruct_png_and_json(client):
    jpeg = photo_bytes("coffee")
    response = client.post("/v1/reconstruct?mask_ratio=0.5&seed=7", **_raw(jpeg))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-lomar-seed"] == "7"
    strip = Image.open(io.BytesIO(response.content))
    assert strip.size == (4 * 32 + 3 * 4, 32)
    again = client.post("/v1/reconstruct?mask_ratio=0.5&seed=7", **_raw(jpeg))
    assert again.content == response.content
    body = client.post("/v1/reconstruct?format=json&mask_ratio=0.5&seed=7", **_files(jpeg, jpeg)).json()
    assert body["seed"] == 7 and body["hidden_patches"] == 8 and len(body["results"]) == 2
    assert set(body["results"][0]) == {"strip", "original", "masked", "reconstruction", "pasted"}


@pytest.mark.parametrize("request_kwargs,status,code", [
    ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "bad_request"),
    ({"content": b"plain text", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"files": [("image", ("a.txt", b"plain text", "text/plain"))]}, 415, "unsupported_media_type"),
    ({"files": [("image", ("a.jpg", b"", "image/jpeg"))]}, 400, "invalid_image"),
    ({"files": [("other", ("a.jpg", b"x", "image/jpeg"))]}, 400, "bad_request"),
    ({"content": b"\xff\xd8\xff" + b"0" * 2_100_000, "headers": {"content-type": "image/jpeg"}}, 413,
     "payload_too_large"),
])
def test_bad_uploads(client, request_kwargs, status, code):
    _assert_error(client.post("/v1/classify", **request_kwargs), status, code)
    assert client.post("/v1/classify", **_raw(photo_bytes("camera"))).status_code == 200


def test_too_many_images(client):
    _assert_error(client.post("/v1/classify", **_files(*[photo_bytes("coins")] * 7)), 413, "payload_too_large")


@pytest.mark.parametrize("query,status,code", [
    ("/v1/classify?top_k=0", 422, "invalid_parameter"),
    ("/v1/classify?top_k=100001", 422, "invalid_parameter"),
    ("/v1/classify?top_k=abc", 422, "invalid_parameter"),
    ("/v1/classify?model=nope", 404, "model_not_found"),
    ("/v1/classify?model=../etc", 422, "invalid_parameter"),
    ("/v1/classify?model=fake_reconstructor", 422, "wrong_model_kind"),
    ("/v1/reconstruct?model=fake_classifier", 422, "wrong_model_kind"),
    ("/v1/reconstruct?mask_ratio=1.5", 422, "invalid_parameter"),
    ("/v1/reconstruct?format=gif", 422, "invalid_parameter"),
])
def test_bad_parameters(client, query, status, code):
    _assert_error(client.post(query, **_raw(photo_bytes("camera"))), status, code)


def test_top_k_above_the_class_count_returns_every_class(client):
    for top_k in (NUM_CLASSES, NUM_CLASSES + 1, 100_000):
        labels = client.post(f"/v1/classify?top_k={top_k}", **_raw(photo_bytes("camera"))).json()["results"][0]
        assert sorted(item["index"] for item in labels["labels"]) == list(range(NUM_CLASSES))


def test_unknown_route_is_json(client):
    _assert_error(client.get("/v2/nothing"), 404, "not_found")


def test_triton_down_is_503_with_retry_after(client, backend):
    jpeg = photo_bytes("astronaut")
    assert client.get("/readyz").status_code == 200
    backend.down = True
    response = client.post("/v1/classify", **_raw(jpeg))
    _assert_error(response, 503, "triton_unavailable")
    assert response.headers["retry-after"] == "2"
    ready = client.get("/readyz")
    _assert_error(ready, 503, "triton_unavailable")
    assert "retry-after" in ready.headers
    assert client.get("/healthz").status_code == 200
    backend.down = False
    assert client.post("/v1/classify", **_raw(jpeg)).status_code == 200


def test_readyz_names_a_published_model_its_triton_has_not_loaded(tmp_path, backend):
    """Every model the repository publishes counts, not only the defaults: a model a job exported after this
    gateway's Triton started is unready until the control plane loads it there."""
    (tmp_path / "fresh_model").mkdir()
    (tmp_path / "fresh_model" / "config.pbtxt").write_text(
        'name: "fresh_model"\nversion_policy { specific { versions: 3 } }\n')
    settings = Settings(model_repository=tmp_path, default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor")
    with TestClient(create_app(settings, backend=backend)) as client:
        response = client.get("/readyz")
        _assert_error(response, 503, "triton_unavailable")
        assert "published model 'fresh_model' version 3 is not loaded" in response.json()["error"]["message"]
        backend.models = (*FakeBackend.models, "fresh_model")  # the fake's index says version 1 is READY
        assert "'fresh_model' version 3" in client.get("/readyz").json()["error"]["message"]
        (tmp_path / "fresh_model" / "config.pbtxt").write_text(
            'name: "fresh_model"\nversion_policy { specific { versions: 1 } }\n')
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).status_code != 200:  # routing follows within its interval
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.05)
        assert ready.json()["models"] == {"fake_classifier": "1", "fake_reconstructor": "1", "fresh_model": "1"}


def test_models_listing(client):
    body = client.get("/v1/models").json()
    models = {model["name"]: model for model in body["models"]}
    assert models["fake_classifier"]["kind"] == "classifier"
    assert models["fake_classifier"]["num_classes"] == NUM_CLASSES
    assert models["fake_classifier"]["labels"] == LABELS and "labels" not in models["fake_reconstructor"]
    assert models["fake_classifier"]["versions"][0]["model_card"] == CARD.to_dict()
    assert models["fake_reconstructor"]["patch_size"] == 8 and models["fake_reconstructor"]["serving_version"] == "1"


def test_metrics(client):
    client.post("/v1/classify", **_raw(photo_bytes("astronaut")))
    client.post("/v1/classify?model=made-up-name", **_raw(photo_bytes("astronaut")))
    client.post("/v1/embed", content=b"text", headers={"content-type": "text/plain"})
    text = client.get("/metrics").text
    assert 'lomar_requests_total{endpoint="classify",model="fake_classifier",status="200"} 1.0' in text
    assert 'lomar_requests_total{endpoint="classify",model="(other)",status="404"} 1.0' in text
    assert 'lomar_requests_total{endpoint="embed",model="fake_classifier",status="415"} 1.0' in text
    assert "made-up-name" not in text
    for name in ("lomar_request_seconds_bucket", "lomar_decode_seconds_bucket", "lomar_batch_size_bucket",
                 "lomar_triton_seconds_bucket"):
        assert name in text


def test_web_page_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert not any(marker in page.text for marker in ('src="http', 'href="http', "url(http", "@import"))
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert not any(marker in docs.text for marker in ('src="http', 'href="http'))  # works offline
    script = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


def test_version_routing(tmp_path):
    backend = FakeBackend()
    versions = []
    original = backend.infer

    async def recording_infer(model, inputs, outputs, *, version="", class_count=None):
        versions.append(version)
        return await original(model, inputs, outputs, version=version, class_count=class_count)

    backend.infer = recording_infer
    settings = Settings(model_repository=tmp_path, default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor")
    routes = {"fake_classifier": "1"}
    with TestClient(create_app(settings, backend=backend, version_for=routes.get)) as test_client:
        test_client.post("/v1/embed", **_raw(photo_bytes("coffee")))
        test_client.post("/v1/reconstruct", **_raw(photo_bytes("coffee")))
    assert versions == ["1", "1", ""]  # label discovery and embed on the routed version; reconstruct unrouted


def test_the_gateway_dependencies_take_no_thread_hop(client, monkeypatch):
    """FastAPI runs a plain `def` dependency in its thread pool: a hop per request for an attribute read."""
    import fastapi.dependencies.utils as dependency_utils

    hops: list[str] = []
    run_in_threadpool = dependency_utils.run_in_threadpool

    async def counting(function, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        hops.append(function.__name__)
        return await run_in_threadpool(function, *args, **kwargs)

    monkeypatch.setattr(dependency_utils, "run_in_threadpool", counting)
    assert client.post("/v1/classify", **_raw(photo_bytes("coffee"))).status_code == 200
    assert client.get("/v1/models").status_code == 200
    assert hops == []  # neither get_gateway/get_settings nor the API-key check (deps.requires) takes one
