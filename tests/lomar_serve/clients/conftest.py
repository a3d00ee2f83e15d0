"""The clients talk to a real gateway over HTTP: the gateway tests' live server (a fake inference backend)."""
from tests.lomar_serve.gateway.api.conftest import live_server  # noqa: F401  (a fixture)
