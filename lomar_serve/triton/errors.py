"""Exceptions of the Triton launcher (and of the supervisor built on it)."""
from __future__ import annotations


class TritonError(Exception):
    """Base class for everything that goes wrong around the Triton server process."""


class TritonNotFoundError(TritonError):
    """The Triton binary bundled with nvidia-pytriton (or a part of it) cannot be found."""


class TritonStartError(TritonError):
    """The server process exited, or did not become ready, while starting. The message carries the log tail."""
