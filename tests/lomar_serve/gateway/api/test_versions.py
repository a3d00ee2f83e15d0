"""`?version=` pins an answer to a version: a version the repository does not have, or Triton does not serve, is a
404 that says so; the answer is labelled by the version that computed it; per-version metrics."""
from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.lomar_serve.fake_backend import FakeBackend
from tests.lomar_serve.photos import encode

PNG = encode(np.full((40, 40, 3), 90, np.uint8))


def classify(client: TestClient, **params: str):
    return client.post("/v1/classify", content=PNG, headers={"content-type": "image/png"}, params=params)


def test_a_pinned_version_answers_and_an_unknown_one_is_a_404(client: TestClient, backend: FakeBackend) -> None:
    answer = classify(client, version="1")
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    missing = classify(client, version="7")
    assert missing.status_code == 404 and "no version 7" in missing.json()["error"]["message"]
    for bad in ("0", "x", "01"):
        assert classify(client, version=bad).status_code == 422
    for path in ("/v1/embed", "/v1/reconstruct"):
        assert client.post(path, content=PNG, headers={"content-type": "image/png"},
                           params={"version": "9"}).status_code == 404
    metrics = client.get("/metrics").text
    assert 'lomar_version_calls_total{model="fake_classifier",outcome="ok",role="answer",version="1"}' in metrics
    assert 'lomar_version_confidence_count{model="fake_classifier",version="1"}' in metrics
