"""A real uvicorn server (in a thread, real sockets) running the gateway app on the FAKE backend, with short
read timeouts."""
from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from lomar_serve.api.timeouts import header_timeout_protocol
from lomar_serve.app import create_app
from lomar_serve.settings import Settings
from tests.lomar_serve.e2e.conftest import free_port
from tests.lomar_serve.fake_backend import FakeBackend

TIMEOUT_S = 0.5  # header and body timeouts of the live server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("repo"), default_classifier="fake_classifier",
                        default_reconstructor="fake_reconstructor", header_timeout_s=TIMEOUT_S,
                        body_timeout_s=TIMEOUT_S)
    port = free_port()
    config = uvicorn.Config(create_app(settings, backend=FakeBackend()), host="127.0.0.1", port=port,
                            log_level="warning", http=header_timeout_protocol(settings.header_timeout_s))
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port
    instance.should_exit = True
    thread.join(timeout=10)
