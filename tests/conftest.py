"""Shared test fixtures: paths to the reference fixtures and small deterministic images."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
OFFICIAL_FIXTURES = REPO / "tests" / "fixtures" / "official_lomar_micro"  # made by the paper's reference code
ARTIFACTS = REPO / "test-artifacts"


# Programs that make a test end-to-end: the project's own processes (Python interpreters running training, the
# gateway, the CLI or a benchmark), torchrun, Triton and the browser. Toolchain processes that libraries start
# themselves (torch.compile runs the C++ compiler) are not refused.
E2E_PROGRAMS = ("python", "torchrun", "lomar", "tritonserver", "chromium", "chromedriver")


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test-fast` (-m "not e2e") starts no training run, Triton, gateway or browser: a test that starts one
    must be marked e2e."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    start = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen, args, *rest, **kwargs) -> None:
        program = Path(str(args if isinstance(args, (str, bytes)) else args[0]).split()[0]).name
        if program.startswith(E2E_PROGRAMS):
            raise AssertionError(f"a unit test started a process ({args!r}): mark the test e2e")
        start(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.fail(f"reference fixtures missing at {OFFICIAL_FIXTURES}")
    return OFFICIAL_FIXTURES


@pytest.fixture(scope="session")
def reference_outputs(official_dir: Path) -> dict[str, np.ndarray]:
    with np.load(official_dir / "reference_outputs.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def reference_meta(official_dir: Path) -> dict:
    return json.loads((official_dir / "meta.json").read_text())


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
