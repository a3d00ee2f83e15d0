"""The folder tree is the architecture: one package per process, shared packages below them, no import that runs
back up and no circle. The rules are docs/architecture.md's ("Packages and imports"); this test reads every import
(module level and inside functions) with `ast`, so a violation fails here before a reader meets it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("contracts", "training", "export", "lomar_serve")
# lomar_serve's packages and what each may import besides itself and `contracts`. Process packages never import
# each other; `serve` is the one-box composition of the others; `cli.py` and `settings_reference.py` (top-level
# modules) may import anything.
ALLOWED = {
    "common": set(),
    "search": {"common"},
    # the torch-free parts of training: job options and their checks, architectures and their memory estimate
    "jobs": {"common", "training.config", "training.errors", "training.models.architectures", "training.models.config",
             "training.models.memory"},
    "triton": {"common"},
    "clients": {"common", "gateway.api.schemas"},
    "gateway": {"common", "search"},
    "control_plane": {"common", "jobs"},
    "worker": {"common", "jobs", "clients"},
    "serve": {"common", "gateway", "control_plane", "triton", "worker.settings", "worker.executors.settings"},
}
TOP_LEVEL_MODULES = {"cli", "settings_reference"}
# The other top-level packages: what each may import of the project.
OUTSIDE = {"contracts": set(), "training": {"contracts"}, "export": {"contracts", "training"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The project modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(name for name in [node.module, *names] if name.split(".")[0] in PROJECT)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PROJECT)
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (only names that are modules or packages)."""
    files = {_module_name(path): path for package in PROJECT for path in (ROOT / package).rglob("*.py")}
    return {module: {name for name in _imports(path) if name in files} for module, path in files.items()}


GRAPH = _graph()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "lomar_serve" and len(parts) > 1 else parts[0]


def _allowed(importer: str, imported: str) -> bool:
    if importer.split(".")[0] != "lomar_serve":
        allowed = OUTSIDE[importer.split(".")[0]]
        return imported.split(".")[0] in {importer.split(".")[0], *allowed}
    room, target = _room(importer), imported.removeprefix("lomar_serve.")
    if room in TOP_LEVEL_MODULES or imported.startswith("contracts"):
        return True
    if imported.split(".")[0] != "lomar_serve":
        return any(imported == rule or imported.startswith(rule + ".") for rule in ALLOWED[room])
    if target in TOP_LEVEL_MODULES or imported == "lomar_serve":
        return False
    return _room(imported) == room or any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[room])


def test_every_package_has_a_rule() -> None:
    rooms = {_room(module) for module in GRAPH if module.startswith("lomar_serve.")}
    assert rooms == set(ALLOWED) | TOP_LEVEL_MODULES, "a new package of lomar_serve needs its import rule here"


@pytest.mark.parametrize("room", sorted({*ALLOWED, *OUTSIDE}))
def test_imports_follow_the_rules(room: str) -> None:
    wrong = sorted(f"{importer} -> {imported}" for importer, targets in GRAPH.items() for imported in targets
                   if (_room(importer) == room) and not _allowed(importer, imported))
    assert not wrong, f"imports across the architecture's rules:\n" + "\n".join(wrong)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Chains of imports that lead a module back to itself (a package's __init__ importing its own modules is not
    one)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return [circle for circle in circles if not all(m.startswith(circle[0] + ".") for m in circle[1:-1])]


def test_no_import_circle() -> None:
    """Factories live apart from the interfaces their implementations import."""
    circles = _circles(GRAPH)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in circles)


def test_the_checks_can_fail() -> None:
    """The rules refuse what the restructuring removed: an arrow back up, a process importing another one."""
    assert not _allowed("lomar_serve.jobs.service", "lomar_serve.control_plane.settings")
    assert not _allowed("lomar_serve.worker.runner", "lomar_serve.control_plane.queue")
    assert not _allowed("lomar_serve.search.errors", "lomar_serve.gateway.errors")
    assert not _allowed("lomar_serve.common.errors", "lomar_serve.cli")
    assert not _allowed("contracts.datasets", "training.config")
    assert not _allowed("lomar_serve.gateway.app", "training.models")
    assert _allowed("lomar_serve.serve.main", "lomar_serve.gateway.app")
    engine_and_factory = {"search.engine": {"search.embedded"}, "search.embedded": {"search.engine"}}
    assert _circles(engine_and_factory) == [["search.embedded", "search.engine", "search.embedded"]]
