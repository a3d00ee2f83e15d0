"""`make serve`'s job: `lomar serve` with no arguments, from the repository root, on the built-in models."""
from __future__ import annotations

import io
import json
import signal
import subprocess

import httpx
import pytest
from PIL import Image

from tests.lomar_serve.processes import REPO, launch_serve
from tests.lomar_serve.photos import photo_bytes

pytestmark = pytest.mark.e2e
BUILTIN = REPO / "model_repository"


@pytest.fixture(scope="module")
def builtin_gateway(tmp_path_factory: pytest.TempPathFactory):
    if not (BUILTIN / "lomar_classifier").is_dir():
        pytest.fail("model_repository/ has no built-in lomar_classifier (run `make default-models`)")
    # no --model-repository: the default, ./model_repository, as `make serve` runs it
    folder = tmp_path_factory.mktemp("builtin")
    served = launch_serve([], folder / "lomar_serve.log", {"LOMAR_JOBS_DIR": str(folder / "jobs")})
    process = served.process
    try:
        served.wait_ready()
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("photo,label", [("chelsea", "cat"), ("coffee", "coffee_cup"), ("rocket", "rocket"),
                                          ("astronaut", "astronaut")])
def test_builtin_classifier_recognises_its_photographs(builtin_gateway, photo, label):
    answer = httpx.post(f"{builtin_gateway.url}/v1/classify?top_k=3",
                        files={"image": (f"{photo}.jpg", photo_bytes(photo), "image/jpeg")}, timeout=60)
    assert answer.status_code == 200, answer.text
    labels = answer.json()["results"][0]["labels"]
    assert labels[0]["label"] == label, labels


def test_builtin_models_are_listed_with_model_cards(builtin_gateway):
    models = httpx.get(f"{builtin_gateway.url}/v1/models", timeout=30).json()
    text = json.dumps(models)
    assert "lomar_classifier" in text and "lomar_reconstruction" in text
    assert "sha256" in text  # model cards of the shipped versions


def test_builtin_reconstruction_strip(builtin_gateway):
    answer = httpx.post(f"{builtin_gateway.url}/v1/reconstruct?mask_ratio=0.75&seed=0",
                        files={"image": ("chelsea.jpg", photo_bytes("chelsea"), "image/jpeg")}, timeout=60)
    assert answer.status_code == 200, answer.text
    strip = Image.open(io.BytesIO(answer.content))
    assert strip.format == "PNG" and strip.width >= 4 * strip.height * 0.9
