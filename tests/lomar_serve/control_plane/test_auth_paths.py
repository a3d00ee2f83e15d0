"""Admin token checks, data-root confinement and name validation."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lomar_serve.control_plane.auth import AdminAuth
from lomar_serve.common.errors import Forbidden, Unauthorized
from lomar_serve.jobs.errors import AdminDisabled, InvalidName, PathNotAllowed
from lomar_serve.jobs.paths import DataRoots, check_model_name, check_version


def test_no_token_configured_disables_admin() -> None:
    with pytest.raises(AdminDisabled, match="LOMAR_ADMIN_TOKEN"):
        AdminAuth(None).check("Bearer anything")
    with pytest.raises(AdminDisabled):
        AdminAuth("").check(None)


def test_bearer_token_checks() -> None:
    auth = AdminAuth("s3cret-token")
    auth.check("Bearer s3cret-token")
    auth.check("bearer   s3cret-token ")
    with pytest.raises(Unauthorized) as missing:
        auth.check(None)
    assert missing.value.status == 401 and missing.value.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(Unauthorized):
        auth.check("Basic s3cret-token")
    for wrong in ("Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer ünïcode"):
        with pytest.raises(Forbidden) as refused:
            auth.check(wrong)
        assert "s3cret" not in refused.value.message
    assert "s3cret" not in repr(auth)


@pytest.mark.parametrize("name", ["lomar_classifier", "a", "A-1_b", "a.b", "x" * 64])
def test_valid_model_names(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", ".a", "-a", "x" * 65, "a b", "a\x00"])
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(InvalidName):
        check_model_name(name)


def test_versions() -> None:
    assert check_version(3) == "3" and check_version("12") == "12"
    for bad in (0, -1, "01", "1/..", "x", True, "1.5"):
        with pytest.raises(InvalidName):
            check_version(bad)


def test_paths_confined_to_data_roots(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "set" / "cls").mkdir(parents=True)
    (root / "base.pth").write_bytes(b"x")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "f.pth").write_bytes(b"x")
    os.symlink(outside, root / "link")
    roots = DataRoots.of([root])
    assert roots.resolve(str(root / "set"), must_be_dir=True) == (root / "set").resolve()
    assert roots.resolve("set", must_be_dir=True) == (root / "set").resolve()  # relative to the first root
    assert roots.resolve("base.pth") == (root / "base.pth").resolve()
    for bad in ("../secret", str(outside), "set/../../secret", "link", "link/f.pth", "/etc", ""):
        with pytest.raises(PathNotAllowed):
            roots.resolve(bad, must_be_dir=bad not in ("link/f.pth",))
    with pytest.raises(PathNotAllowed, match="not a folder"):
        roots.resolve("base.pth", must_be_dir=True)
    with pytest.raises(PathNotAllowed, match="no data roots"):
        DataRoots.of([]).resolve("set", must_be_dir=True)
