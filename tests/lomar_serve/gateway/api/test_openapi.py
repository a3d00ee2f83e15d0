"""The OpenAPI document describes every body, bound and status (the fuzzing against it is
tests/lomar_serve/gateway/e2e/test_schemathesis.py)."""
from __future__ import annotations

import pytest

INFERENCE = ("/v1/classify", "/v1/embed", "/v1/reconstruct")


@pytest.fixture()
def document(client):
    return client.get("/openapi.json").json()


@pytest.mark.parametrize("path", INFERENCE)
def test_inference_bodies_are_multipart_raw_and_json(document, path):
    content = document["paths"][path]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "image/*", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["items"]["format"] == "binary"
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ImagesRequest"}
    assert "ImagesRequest" in document["components"]["schemas"]


@pytest.mark.parametrize("path", (*INFERENCE, "/v1/embeddings"))
def test_every_error_status_is_documented_with_the_error_body(document, path):
    responses = document["paths"][path]["post"]["responses"]
    assert {"400", "404", "408", "413", "415", "422", "502", "503", "504"} <= set(responses)
    for status in ("400", "422", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "Retry-After" in responses["503"]["headers"]
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's default 422 body is never sent


def test_responses_and_bounds_are_typed(document):
    paths = document["paths"]
    classify = paths["/v1/classify"]["post"]
    assert classify["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ClassifyResponse"}
    top_k = next(p for p in classify["parameters"] if p["name"] == "top_k")["schema"]
    assert top_k["minimum"] == 1 and top_k["maximum"] >= 1000
    reconstruct = paths["/v1/reconstruct"]["post"]["responses"]["200"]["content"]
    assert set(reconstruct) == {"image/png", "application/json"}
    embeddings = paths["/v1/embeddings"]["post"]
    assert embeddings["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EmbeddingsRequest"}
    assert not [path for path in paths if path.startswith("/v1/admin")]  # the control plane's, on its own port


def test_wrong_method_lists_every_method_of_the_path(client):
    response = client.request("OPTIONS", "/v1/collections")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= set(response.headers["allow"].replace(" ", "").split(","))
