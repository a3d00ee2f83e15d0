"""Run the Triton server binary bundled with nvidia-pytriton (no torch, no pytriton Python API)."""
from lomar_serve.triton.errors import TritonError, TritonNotFoundError, TritonStartError
from lomar_serve.triton.server import TritonServer, TritonServerConfig

__all__ = ["TritonError", "TritonNotFoundError", "TritonServer", "TritonServerConfig", "TritonStartError"]
