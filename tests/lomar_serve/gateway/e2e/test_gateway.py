"""The real stack: `lomar serve` (gateway + supervised Triton) on models exported from the official checkpoints."""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from contracts.preprocessing import DecodeOptions
from contracts.reconstruction_mask import sample_mask
from lomar_serve.gateway.catalog import ModelCatalog
from lomar_serve.gateway.decode_budget import decode_image
from lomar_serve.gateway.inference import TritonClient
from lomar_serve.gateway.reconstruction import GAP, MASK_GREY
from tests.contracts.samples import png_bomb
from tests.lomar_serve.gateway.e2e.conftest import TRITON_HTTP_PORT
from tests.lomar_serve.processes import E2E_LABELS, REPO, children, free_port
from tests.lomar_serve.photos import PHOTO_NAMES, encode, photo_array, photo_bytes

pytestmark = pytest.mark.e2e
OPTIONS = DecodeOptions(size=(224, 224))


def _files(blobs, names=None):
    names = names or [f"{i}.jpg" for i in range(len(blobs))]
    return [("image", (name, blob, "image/jpeg")) for name, blob in zip(names, blobs)]


def _triton_direct(gateway, model, inputs, outputs):
    async def call():
        triton = TritonClient(gateway.triton_http_url())
        try:
            return (await triton.infer(model, inputs, outputs)).outputs
        finally:
            await triton.close()
    return asyncio.run(call())


def test_lomar_serve_launches_triton_on_the_pinned_port(gateway):
    assert gateway.triton_http_url() == f"127.0.0.1:{TRITON_HTTP_PORT}"  # LOMAR_TRITON_HTTP_PORT of the fixture


def test_classify_photos_matches_triton_direct(client, gateway, reference_meta):
    jpeg = photo_bytes("chelsea")
    classes = reference_meta["num_classes"]
    body = client.post(f"/v1/classify?top_k={classes}", content=jpeg, headers={"content-type": "image/jpeg"}).json()
    labels = body["results"][0]["labels"]
    assert body["model"] == "lomar_classifier" and body["model_version"] == "1"
    assert sorted(item["index"] for item in labels) == list(range(classes))
    assert all(item["label"] == E2E_LABELS[item["index"]] for item in labels)  # labels.txt of the export
    assert abs(sum(item["score"] for item in labels) - 1.0) < 1e-6
    # The same preprocessed tensor sent to Triton directly gives the same probabilities.
    logits = _triton_direct(gateway, "lomar_classifier", {"image": decode_image(jpeg, OPTIONS)[None]}, ["logits"])
    expected = np.exp(logits["logits"][0] - logits["logits"][0].max())
    expected /= expected.sum()
    for item in labels:
        assert abs(item["score"] - expected[item["index"]]) < 1e-5


def test_batch_of_8_equals_8_single_requests(client):
    blobs = [photo_bytes(name) for name in PHOTO_NAMES]
    batch = client.post("/v1/classify?top_k=3", files=_files(blobs)).json()["results"]
    embeddings = client.post("/v1/embed", files=_files(blobs)).json()["results"]
    assert len(batch) == len(embeddings) == 8
    for index, blob in enumerate(blobs):
        single = client.post("/v1/classify?top_k=3", files=_files([blob])).json()["results"][0]["labels"]
        assert [item["index"] for item in single] == [item["index"] for item in batch[index]["labels"]]
        np.testing.assert_allclose([item["score"] for item in single],
                                   [item["score"] for item in batch[index]["labels"]], atol=1e-5)
        vector = client.post("/v1/embed", content=blob, headers={"content-type": "image/jpeg"}).json()
        np.testing.assert_allclose(vector["results"][0]["embedding"], embeddings[index]["embedding"], atol=1e-5)


def test_embeddings_unit_norm_deterministic_and_distinct(client, reference_meta):
    blobs = [photo_bytes(name) for name in ("astronaut", "coffee", "camera")]
    first = np.array([r["embedding"] for r in client.post("/v1/embed", files=_files(blobs)).json()["results"]])
    second = np.array([r["embedding"] for r in client.post("/v1/embed", files=_files(blobs)).json()["results"]])
    assert first.shape == (3, reference_meta["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first[0] - first[1]).max() > 1e-3  # different photographs, different vectors
    raw = client.post("/v1/embed?normalize=false", files=_files(blobs[:1])).json()
    assert abs(np.linalg.norm(raw["results"][0]["embedding"]) - 1.0) > 1e-3


def test_png_and_greyscale_inputs(client):
    png = client.post("/v1/classify", content=photo_bytes("coffee", "PNG"), headers={"content-type": "image/png"})
    grey = client.post("/v1/classify", content=encode(photo_array("camera"), "PNG"),
                       headers={"content-type": "image/png"})
    assert png.status_code == 200 and grey.status_code == 200


def test_reconstruct_strip(client, gateway):
    jpeg = photo_bytes("astronaut")
    response = client.post("/v1/reconstruct?mask_ratio=0.75&seed=3", content=jpeg,
                           headers={"content-type": "image/jpeg"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    strip = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert strip.shape == (224, 4 * 224 + 3 * GAP, 3)
    original, masked, predicted, pasted = (strip[:, i * (224 + GAP): i * (224 + GAP) + 224] for i in range(4))
    image = decode_image(jpeg, OPTIONS)  # (3, 224, 224)
    np.testing.assert_array_equal(original, image.transpose(1, 2, 0))
    hidden = np.repeat(np.repeat(sample_mask((14, 14), 0.75, 3), 16, 0), 16, 1)  # (224, 224)
    assert (masked[hidden] == MASK_GREY).all() and np.array_equal(masked[~hidden], original[~hidden])
    np.testing.assert_array_equal(pasted[~hidden], original[~hidden])
    np.testing.assert_array_equal(pasted[hidden], predicted[hidden])
    # The reconstruction is Triton's output for this image and mask.
    mask = sample_mask((14, 14), 0.75, 3)[None]
    direct = _triton_direct(gateway, "lomar_reconstruction", {"image": image[None], "mask": mask},
                            ["reconstruction"])["reconstruction"][0]
    expected = np.clip(np.rint(direct), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    assert np.abs(predicted.astype(int) - expected).max() <= 1
    # JSON form, batch of two, same seed = same mask.
    body = client.post("/v1/reconstruct?format=json&mask_ratio=0.5&seed=3",
                       files=_files([jpeg, photo_bytes("coffee")])).json()
    assert body["hidden_patches"] == 98 and len(body["results"]) == 2 and body["seed"] == 3


@pytest.mark.parametrize("kwargs,status,code", [
    ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "bad_request"),
    ({"files": [("image", ("notes.txt", b"just some text\n" * 20, "text/plain"))]}, 415, "unsupported_media_type"),
    ({"content": b"just some text", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"files": _files([photo_bytes("astronaut")[:6000]])}, 400, "invalid_image"),  # truncated JPEG
    ({"files": _files([encode(np.zeros((1, 1, 3), np.uint8), "PNG")])}, 400, "invalid_image"),  # 1x1
    ({"files": _files([b""])}, 400, "invalid_image"),  # 0-byte file
    ({"files": _files([png_bomb()])}, 413, "payload_too_large"),  # 40000 x 40000 PNG
    ({"files": _files([photo_bytes("coins")] * 17)}, 413, "payload_too_large"),  # LOMAR_MAX_IMAGES=16
], ids=["empty-body", "text-file", "text-body", "truncated-jpeg", "1x1", "0-byte", "png-bomb", "too-many"])
def test_bad_inputs_then_still_serving(client, kwargs, status, code):
    response = client.post("/v1/classify", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    ok = client.post("/v1/classify", content=photo_bytes("coffee"), headers={"content-type": "image/jpeg"})
    assert ok.status_code == 200


@pytest.mark.parametrize("path,status,code", [
    ("/v1/classify?model=no_such_model", 404, "model_not_found"),
    ("/v1/embed?model=no_such_model", 404, "model_not_found"),
    ("/v1/classify?top_k=0", 422, "invalid_parameter"),
    ("/v1/classify?top_k=100001", 422, "invalid_parameter"),
    ("/v1/classify?model=lomar_reconstruction", 422, "wrong_model_kind"),
    ("/v1/reconstruct?mask_ratio=-0.1", 422, "invalid_parameter"),
])
def test_bad_parameters(client, path, status, code):
    response = client.post(path, content=photo_bytes("coffee"), headers={"content-type": "image/jpeg"})
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_models_health_metrics(client, reference_meta):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    classifier = models["lomar_classifier"]
    assert classifier["kind"] == "classifier" and classifier["num_classes"] == reference_meta["num_classes"]
    assert models["lomar_reconstruction"]["patch_size"] == 16
    card = models["lomar_classifier"]["versions"][0]["model_card"]
    assert card["source_sha256"] and card["architecture"]["embed_dim"] == reference_meta["embed_dim"]
    # exported for the CPU (KIND_CPU): the runner's sessions run there, and the listing says so
    assert [version["runs_on"] for model in models.values() for version in model["versions"]] == \
        [["CPUExecutionProvider"]] * 2
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["models"] == {"lomar_classifier": "1", "lomar_reconstruction": "1"}
    metrics = client.get("/metrics").text
    assert 'lomar_requests_total{endpoint="classify",model="lomar_classifier",status="200"}' in metrics
    assert 'lomar_batch_size_bucket{endpoint="classify",le="8.0"}' in metrics


def test_labels_from_triton_when_repository_is_remote(gateway, reference_meta):
    """Without local files the catalog reads the labels through Triton's classification extension."""
    async def discover():
        triton = TritonClient(gateway.triton_http_url())
        try:
            return await ModelCatalog(triton, repository=None).get("lomar_classifier", "classifier")
        finally:
            await triton.close()
    spec = asyncio.run(discover())
    assert spec.labels == E2E_LABELS and spec.embedding_dim == reference_meta["embed_dim"]
    assert spec.image_size == (reference_meta["img_size"],) * 2


def test_command_line_client(gateway, tmp_path):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photo_bytes("coffee"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def lomar(*args):
        return subprocess.run([sys.executable, "-m", "lomar_serve.cli", *args, "--url", gateway.url],
                              capture_output=True, text=True, env=env, timeout=120)

    classified = lomar("classify", str(photo), "--top-k", "2")
    assert classified.returncode == 0, classified.stderr
    result = json.loads(classified.stdout)["results"][0]
    assert result["file"] == str(photo) and len(result["labels"]) == 2
    reconstructed = lomar("reconstruct", str(photo), "--seed", "1", "--out-dir", str(tmp_path / "out"))
    assert reconstructed.returncode == 0, reconstructed.stderr
    png = tmp_path / "out" / "coffee.reconstruction.png"
    assert json.loads(reconstructed.stdout)["results"][0]["png"] == str(png)
    assert Image.open(png).size == (4 * 224 + 3 * GAP, 224)
    everything = lomar("classify", str(photo), "--top-k", "50")  # more than the classes: all of them
    assert everything.returncode == 0 and len(json.loads(everything.stdout)["results"][0]["labels"]) == len(E2E_LABELS)
    refused = lomar("embed", str(photo), "--model", "no_such_model")
    assert refused.returncode == 1 and "model_not_found" in refused.stderr


def test_gateway_in_front_of_an_existing_triton(gateway, model_repository, tmp_path):
    """`lomar serve --triton-url` launches nothing, serves through that Triton and leaves it running on exit."""
    triton_pid, port = gateway.triton_pid(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lomar_serve.cli", "serve", "--triton-url", gateway.triton_http_url(),
         "--model-repository", str(model_repository), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO), "LOMAR_SEARCH_DIR": str(tmp_path / "collections")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # collections of its own: the session's are locked
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        response = httpx.post(f"{url}/v1/classify", content=photo_bytes("coffee"),
                              headers={"content-type": "image/jpeg"}, timeout=60)
        assert response.status_code == 200 and len(response.json()["results"][0]["labels"]) == 5
        assert children(process.pid) == []  # no Triton of its own
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert gateway.triton_pid() == triton_pid  # the existing Triton keeps running
