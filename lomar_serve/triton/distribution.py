"""Locate the Triton server that nvidia-pytriton bundles and prepare its Python backend directory.

Only files are located: pytriton's Python API is never imported (it is heavy and not needed to run the binary).
Layout inside site-packages (nvidia-pytriton 0.7.0, Triton 2.51):
    pytriton/tritonserver/bin/tritonserver
    pytriton/tritonserver/backends/python/{libtriton_python.so, triton_python_backend_utils.py}
    pytriton/tritonserver/python_backend_stubs/<major.minor>/triton_python_backend_stub
    nvidia_pytriton.libs/   (shared libraries the binary links against)
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from lomar_serve.common.settings import SETTINGS_CONFIG
from lomar_serve.triton.errors import TritonNotFoundError

LOGGER = logging.getLogger(__name__)
STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonDistribution:
    """Paths of one bundled Triton installation."""

    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs
    version: str  # the nvidia-pytriton package version

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub(self, python_version: str) -> Path:
        return self.root / "python_backend_stubs" / python_version / STUB_NAME


def find_distribution() -> TritonDistribution:
    """Find the Triton binary shipped by the installed nvidia-pytriton package.

    Raises:
        TritonNotFoundError: nvidia-pytriton is not installed or its bundle is incomplete.
    """
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFoundError("nvidia-pytriton is not installed: `pip install nvidia-pytriton` (extra: serve)")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    dist = TritonDistribution(
        root=package_dir / "tritonserver",
        libs=package_dir.parent / "nvidia_pytriton.libs",
        version=importlib.metadata.version("nvidia-pytriton"),
    )
    for required in (dist.binary, dist.python_backend / "libtriton_python.so", dist.libs):
        if not required.exists():
            raise TritonNotFoundError(f"incomplete nvidia-pytriton install: {required} is missing")
    return dist


class BackendCacheSettings(BaseSettings):
    """Read by every process that launches Triton (`lomar serve`, `lomar triton`, export verification)."""

    model_config = SETTINGS_CONFIG

    triton_cache: Path | None = Field(None, description="where the Python backend directory for the bundled Triton "
                                                        "is assembled (unset: ~/.cache/lomar/triton if writable)")


def default_cache_dir() -> Path:
    """Where prepared backend directories live: $LOMAR_TRITON_CACHE, else ~/.cache/lomar/triton if writable."""
    configured = BackendCacheSettings().triton_cache
    if configured is not None:
        return configured
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lomar" / "triton"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    # a read-only home (some containers): a per-user folder in the temp directory
    return Path(tempfile.gettempdir()) / f"lomar-triton-{os.getuid()}"


def prepare_backend_directory(dist: TritonDistribution, cache_dir: Path | None = None) -> Path:
    """Return a `--backend-directory` whose python/ holds the backend library and the stub for this Python.

    The Python backend looks for `triton_python_backend_stub` next to `libtriton_python.so`; the bundle keeps one
    stub per Python version apart, so a directory is assembled once per (pytriton version, Python version) and
    reused. Assembly happens in a temporary directory renamed into place, so concurrent starts never see half of it.

    Raises:
        TritonNotFoundError: no stub for the running Python version.
    """
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist.stub(python_version)
    if not stub.is_file():
        raise TritonNotFoundError(f"nvidia-pytriton {dist.version} has no Python backend stub for Python "
                                  f"{python_version} (looked for {stub})")
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"backends-pytriton{dist.version}-py{python_version}"
    if (target / "python" / STUB_NAME).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=cache_dir))
    try:
        shutil.copytree(dist.python_backend, staging / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, staging / "python" / STUB_NAME)
        os.rename(staging, target)
        LOGGER.info("prepared Triton backend directory %s", target)
    except OSError:
        # Another process renamed its copy into place first; theirs is complete, so use it.
        if not (target / "python" / STUB_NAME).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
