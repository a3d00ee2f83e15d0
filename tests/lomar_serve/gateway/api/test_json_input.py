"""JSON (base64 / data URI) input and the OpenAI-shaped /v1/embeddings, on the FAKE backend (unit tests; the
real `openai` package against the real gateway is in tests/lomar_serve/gateway/e2e/test_openai_client.py)."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.lomar_serve.gateway.api.test_routes import _assert_error, _raw
from tests.lomar_serve.fake_backend import DIM
from tests.lomar_serve.photos import photo_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_images_equal_raw_uploads(client):
    jpeg, png = photo_bytes("chelsea"), photo_bytes("coffee", "PNG")
    raw = [client.post("/v1/embed", **_raw(blob)).json()["results"][0] for blob in (jpeg, png)]
    body = {"images": [f"data:image/jpeg;base64,{_b64(jpeg)}", _b64(png)]}
    assert client.post("/v1/embed", json=body).json()["results"] == raw
    wrapped = {"images": ["data:image/png;charset=x;base64," + "\n".join(_b64(png)[i:i + 76]
                                                                          for i in range(0, len(_b64(png)), 76))]}
    assert client.post("/v1/embed", json=wrapped).json()["results"] == raw[1:]
    labels = client.post("/v1/classify?top_k=2", json=body).json()["results"]
    assert len(labels) == 2 and len(labels[0]["labels"]) == 2
    strip = client.post("/v1/reconstruct?seed=1", json=body)
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"


@pytest.mark.parametrize("body,status,code", [
    ({"images": []}, 422, "invalid_parameter"),
    ({"images": "abc"}, 422, "invalid_parameter"),
    ({"pictures": ["abc"]}, 422, "invalid_parameter"),
    ({"images": ["not base64!"]}, 400, "bad_request"),
    ({"images": ["https://example.com/cat.jpg"]}, 400, "bad_request"),
    ({"images": ["data:image/png,rawtext"]}, 400, "bad_request"),
    ({"images": [_b64(b"plain text, not an image")]}, 415, "unsupported_media_type"),
    ({"images": [""]}, 400, "invalid_image"),
    ({"images": [_b64(b"x")] * 7}, 413, "payload_too_large"),
])
def test_bad_json_bodies(client, body, status, code):
    _assert_error(client.post("/v1/classify", json=body), status, code)


def test_malformed_json_is_400(client):
    _assert_error(client.post("/v1/embed", content=b"{\"images\": [", headers={"content-type": "application/json"}),
                  400, "bad_request")


def test_openai_embeddings_float_and_base64(client):
    jpeg, png = photo_bytes("astronaut"), photo_bytes("rocket", "PNG")
    expected = [item["embedding"] for item in client.post("/v1/embed", json={"images": [_b64(jpeg), _b64(png)]})
                .json()["results"]]
    body = client.post("/v1/embeddings", json={"model": "fake_classifier", "input": [_b64(jpeg), _b64(png)]}).json()
    assert body["object"] == "list" and body["model"] == "fake_classifier"
    assert body["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in body["data"])
    np.testing.assert_allclose([item["embedding"] for item in body["data"]], expected, atol=1e-12)
    packed = client.post("/v1/embeddings", json={"model": "fake_classifier", "input": _b64(jpeg),
                                                 "encoding_format": "base64", "dimensions": DIM}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, expected[0], atol=1e-6)


@pytest.mark.parametrize("body,status,code", [
    ({"model": "fake_classifier", "input": ["aGk="], "dimensions": DIM + 1}, 400, "bad_request"),
    ({"model": "fake_classifier", "input": []}, 422, "invalid_parameter"),
    ({"model": "fake_classifier", "input": ["aGk="], "encoding_format": "int8"}, 422, "invalid_parameter"),
    ({"input": ["aGk="]}, 422, "invalid_parameter"),
    ({"model": "fake_reconstructor", "input": ["aGk="]}, 422, "wrong_model_kind"),
    ({"model": "nope", "input": ["aGk="]}, 404, "model_not_found"),
    ({"model": "fake_classifier", "input": "a cat on a mat"}, 400, "bad_request"),
])
def test_openai_embeddings_errors(client, body, status, code):
    _assert_error(client.post("/v1/embeddings", json=body), status, code)


def test_openai_embeddings_wants_json(client):
    _assert_error(client.post("/v1/embeddings", **_raw(photo_bytes("coins"))), 415, "unsupported_media_type")
