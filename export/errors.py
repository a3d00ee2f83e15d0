"""Exceptions of the export step."""
from __future__ import annotations


class ExportError(Exception):
    """Base class: an export that cannot be done; the message says why and what to do."""


class UnsupportedCombinationError(ExportError):
    """The requested format, backend and precision do not go together."""


class VerificationError(ExportError):
    """The exported graph does not reproduce PyTorch within tolerance; nothing was written."""


class TensorRTUnavailableError(ExportError):
    """A TensorRT engine was requested where TensorRT is not installed."""
