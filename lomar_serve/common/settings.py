"""What the settings of every role share: the `LOMAR_` prefix, the default model repository, log levels, path
lists, Triton addresses, the admin token's rule, and the start-up description with secrets masked.

Each role has one pydantic-settings class (gateway, control plane, worker, executor, Triton); docs/settings.md is
generated from them (`python -m lomar_serve.common.settings_reference`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr
from pydantic_settings import BaseSettings, NoDecode

ENV_PREFIX = "LOMAR_"
DEFAULT_MODEL_REPOSITORY = Path("model_repository")  # relative to the working directory, as Triton's own flag
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _split_paths(value: object) -> object:
    return tuple(part for part in value.split(os.pathsep) if part) if isinstance(value, str) else value


# LOMAR_DATA_ROOTS and the like: folders separated by os.pathsep (":"), as PATH.
PathList = Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_split_paths)]


def triton_address(value: str) -> str:
    """tritonclient wants "host:port"; "http://host:port/" is accepted too."""
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme):]
    value = value.rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a Triton URL must look like host:port, got {value!r}")
    return value


def log_level(value: str) -> str:
    value = value.lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"unknown log level {value!r}")
    return value


def describe(settings: BaseSettings) -> str:
    """One line per setting, secrets masked: for the start-up log."""
    lines = []
    for name, value in settings.model_dump().items():
        if isinstance(getattr(settings, name), SecretStr):
            value = "********"
        lines.append(f"  {name} = {value}")
    return "\n".join(lines)
