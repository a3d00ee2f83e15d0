"""contracts/ depends on the core dependencies only (numpy, Pillow) and on no other package of the project, so
training, export and serving can all import it."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import contracts

ALLOWED = {"numpy", "PIL", "contracts"} | set(sys.stdlib_module_names)
# The one exception, stated in its docstring: Triton's config schema (tritonclient[grpc], in `serve` and `export`).
EXCEPTIONS = {"triton_config.py": {"google", "tritonclient"}}


def test_contracts_import_only_core_dependencies():
    modules = sorted(Path(contracts.__file__).parent.glob("*.py"))
    assert modules
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                allowed = ALLOWED | EXCEPTIONS.get(module.name, set())
                assert name.split(".")[0] in allowed, f"{module.name} imports {name}"
