"""docs/settings.md is generated from the settings classes, and no LOMAR_* variable is read or documented outside it:
a variable named in the code or the deployment files but missing from the reference is read but undocumented; one
named in the docs but missing from it is documented but read nowhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lomar_serve import settings_reference
from lomar_serve.settings_reference import CONTAINER_VARIABLES, ROLES, render, variables

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bLOMAR_[A-Z0-9_]*[A-Z0-9]\b")  # "LOMAR_K8S_*" in prose is a family, not a name
CODE = [*(ROOT / "lomar_serve").rglob("*.py"), *(ROOT / "training").rglob("*.py"), *(ROOT / "export").rglob("*.py"),
        *(ROOT / "contracts").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "deploy").rglob("*"),
        ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / "Makefile"]
DOCS = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]


def _named(paths: list[Path]) -> dict[str, list[str]]:
    """LOMAR_* name -> the files that name it."""
    found: dict[str, list[str]] = {}
    for path in paths:
        if path.is_file():
            for name in set(NAME.findall(path.read_text(errors="replace"))):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_page_is_the_generated_reference() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == render(), "docs/settings.md is stale: python -m lomar_serve.settings_reference > docs/settings.md"


def test_every_variable_the_code_names_is_in_the_reference() -> None:
    unknown = {name: files for name, files in _named(CODE).items() if name not in variables()}
    assert not unknown, f"read but not in docs/settings.md (declare them in a settings class): {unknown}"


def test_every_variable_the_docs_name_is_read() -> None:
    unknown = {name: files for name, files in _named(DOCS).items() if name not in variables()}
    assert not unknown, f"documented but read by no role: {unknown}"


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_every_setting_is_used_by_the_code(role: settings_reference.Role) -> None:
    """A field nobody reads would be a documented variable that does nothing."""
    code = "\n".join(path.read_text() for path in (ROOT / "lomar_serve").rglob("*.py"))
    unused = [name for name in role.settings.model_fields if not re.search(rf"\.{name}\b", code)]
    assert not unused, f"{role.name}: settings no code reads: {unused}"


def test_container_variables_are_read_where_the_reference_says() -> None:
    for name, (reader, _) in CONTAINER_VARIABLES.items():
        assert name in (ROOT / reader).read_text(), f"{name} is not read by {reader}"


def test_a_shared_variable_has_one_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two roles describing one variable differently is refused (the check itself can fail)."""
    from pydantic import Field

    from lomar_serve.common.settings import RoleSettings

    class Other(RoleSettings):
        port: int = Field(1, description="something else")

    monkeypatch.setattr(settings_reference, "ROLES", (*ROLES, settings_reference.Role("other", Other)))
    with pytest.raises(ValueError, match="LOMAR_PORT"):
        settings_reference.entries()
