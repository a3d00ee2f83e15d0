"""contracts/ and the gateway stay free of torch (the gateway's install has no torch)."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # each check starts a fresh interpreter


@pytest.mark.parametrize("module", ["contracts.model_repository", "contracts.model_card", "contracts.checkpoints",
                                    "lomar_serve.gateway.app", "lomar_serve.control_plane.service",
                                    "lomar_serve.jobs.spec", "lomar_serve.worker.main", "lomar_serve.serve.main",
                                    "lomar_serve.triton.cli", "lomar_serve.clients.admin_cli"])
def test_module_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} imports torch: {result.stderr}"
