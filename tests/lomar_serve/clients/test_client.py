"""The Python client and the `lomar classify|embed|reconstruct` commands against a live server (FAKE backend)."""
from __future__ import annotations

import json

import pytest

from lomar_serve.cli import main as lomar
from lomar_serve.clients.errors import GatewayClientError
from lomar_serve.clients.gateway import LomarClient
from lomar_serve.gateway.api.schemas import ClassifyResponse, EmbedResponse
from tests.lomar_serve.fake_backend import DIM, NUM_CLASSES
from tests.lomar_serve.photos import photo_bytes


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "coffee.jpg"
    path.write_bytes(photo_bytes("coffee"))
    return path


def test_client_returns_typed_models(live_server, photo):
    url, _ = live_server
    with LomarClient(url) as client:
        labels = client.classify([photo, photo_bytes("coins")], top_k=3)
        assert isinstance(labels, ClassifyResponse) and [len(r.labels) for r in labels.results] == [3, 3]
        vectors = client.embed([photo])
        assert isinstance(vectors, EmbedResponse) and vectors.dim == DIM == len(vectors.results[0].embedding)
        assert client.reconstruct([photo], seed=3).seed == 3
        assert {m.name for m in client.models().models} == {"fake_classifier", "fake_reconstructor"}
        with pytest.raises(GatewayClientError) as refused:
            client.classify([photo], model="no_such_model")
        assert refused.value.status == 404 and refused.value.code == "model_not_found"


def test_command_line(live_server, photo, tmp_path, capsys):
    url, _ = live_server
    assert lomar(["classify", str(photo), "--top-k", "50", "--url", url]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["file"] == str(photo) and len(result["labels"]) == NUM_CLASSES
    assert lomar(["embed", str(photo), "--url", url]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"][0]["embedding"]) == DIM
    assert lomar(["reconstruct", str(photo), "--seed", "1", "--out-dir", str(tmp_path / "out"), "--url", url]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["png"] == str(tmp_path / "out" / "coffee.reconstruction.png")
    assert lomar(["embed", str(photo), "--model", "nope", "--url", url]) == 1
    assert "model_not_found" in capsys.readouterr().err
