"""The gateway app on the FAKE backend: in-process (`client`, FastAPI's TestClient) and behind a real uvicorn
server in a thread with short read timeouts (`live_server`, real sockets)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from contracts.model_card import ModelCard, TensorSpec
from contracts.model_repository import LABELS_FILE
from lomar_serve.common.api_keys import SCOPES
from lomar_serve.common.timeouts import header_timeout_protocol
from lomar_serve.gateway.app import create_app
from lomar_serve.gateway.settings import Settings
from tests.lomar_serve.processes import free_port, served_on_a_thread
from tests.lomar_serve.fake_backend import DIM, NUM_CLASSES, SIZE, FakeBackend

TIMEOUT_S = 0.5  # header and body timeouts of the live server
LABELS = [f"thing {i}" for i in range(NUM_CLASSES)]
CARD = ModelCard(name="fake_classifier", task="classify", format="onnx", precision="fp32", backend="python",
                 source_checkpoint="fake.pth", source_sha256="0" * 64, architecture={"embed_dim": DIM},
                 image_size=(SIZE, SIZE), inputs={"image": TensorSpec("UINT8", (3, SIZE, SIZE))},
                 outputs={"logits": TensorSpec("FP32", (NUM_CLASSES,)), "embedding": TensorSpec("FP32", (DIM,))},
                 parity={})  # no classes: the labels come from the label file


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("repo"), default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", header_timeout_s=TIMEOUT_S,
                        body_timeout_s=TIMEOUT_S, search_dir=tmp_path_factory.mktemp("collections"),
                        open_scopes=SCOPES)  # the clients' tests write collections without a key
    port = free_port()
    config = uvicorn.Config(create_app(settings, backend=FakeBackend()), host="127.0.0.1", port=port,
                            log_level="warning", http=header_timeout_protocol(settings.header_timeout_s))
    with served_on_a_thread(config):
        yield f"http://127.0.0.1:{port}", port


@pytest.fixture()
def backend() -> FakeBackend:
    return FakeBackend()


@contextmanager
def gateway_client(repository: Path, backend: FakeBackend, **settings: object) -> Iterator[TestClient]:
    """The app on `backend` with a repository holding fake_classifier v1 (labels, card); `settings` override."""
    version_dir = repository / "fake_classifier" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / LABELS_FILE).write_text("\n".join(LABELS) + "\n")
    CARD.write(version_dir)
    options = {"default_classifier": "fake_classifier", "default_reconstructor": "fake_reconstructor",
               "max_images": 6, "max_upload_bytes": 2_000_000,
               "search_dir": repository / "collections", **settings}  # its own: a gateway locks its folder
    with TestClient(create_app(Settings(model_repository=repository, **options), backend=backend)) as test_client:
        yield test_client


@pytest.fixture()
def client(tmp_path, backend):
    with gateway_client(tmp_path, backend) as test_client:
        yield test_client
