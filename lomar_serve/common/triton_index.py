"""Reading Triton's model repository index (`POST v2/repository/index`: one entry per model version it knows,
with its state), as the gateway's readiness and the control plane's deployer and reconciler both do."""
from __future__ import annotations

from typing import Any

from contracts.model_repository import is_version


def ready_versions(index: list[dict[str, Any]], name: str) -> list[str]:
    """The READY versions of model `name` in a repository index, ascending."""
    ready = [str(e.get("version", "")) for e in index if e.get("name") == name and e.get("state") == "READY"]
    return sorted((v for v in ready if is_version(v)), key=int)
