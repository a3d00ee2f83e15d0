"""What the GPU runtime pin is checked against: the CUDA and Python of NVIDIA's Triton images, and the vendored
metadata of the onnxruntime-gpu wheels (tests/deploy/gpu_wheels.json), read without the network.

Refresh the vendored metadata (needs the package index, installs nothing; pip reads each wheel's METADATA, which
the index serves beside the wheel):

    python -m tests.deploy.gpu_runtime onnxruntime-gpu==1.23.2 onnxruntime-gpu==1.30.0 ...

Each requirement is looked up for every Python of PYTHONS on PLATFORM: which of them have a wheel, and the wheel's
Requires-Dist lines. The command rewrites the whole file with the requirements given, so name every one to keep.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.fleet import REPO

WHEELS_FILE = Path(__file__).with_name("gpu_wheels.json")
GPU_CONSTRAINTS = REPO / "constraints-gpu.txt"
PYTHONS = ("3.10", "3.11", "3.12")  # the Triton 24.x images, this project's CI, the lent GPU machine
PLATFORM = "manylinux_2_28_x86_64"  # the images are x86_64 Ubuntu (glibc 2.35 in 24.10)
CUDA_RUNTIME = re.compile(r"nvidia-cuda-runtime(?:-cu(\d+))?$")
CUDNN = re.compile(r"nvidia-cudnn-cu(\d+)$")


@dataclass(frozen=True)
class TritonRelease:
    """What one release of NVIDIA's Triton container ships."""

    cuda: str  # "12.6"
    python: str  # the system interpreter, which Triton's Python stub runs: "3.10"

    @property
    def cuda_major(self) -> int:
        return int(self.cuda.split(".")[0])


# NVIDIA's Triton containers (nvcr.io/nvidia/tritonserver:<release>-py3) by release. Sources: the Triton release
# notes of each release, "Driver Requirements" (24.10: "based on CUDA 12.6.2"), and Triton's Release Compatibility
# Matrix (docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html:
# 24.10 Python 3.10.12 on Ubuntu 22.04; 24.12 and later Python 3.12 on Ubuntu 24.04). Add a release here before
# the Dockerfile moves to it.
TRITON_RELEASES = {
    "24.10": TritonRelease(cuda="12.6", python="3.10"),
}


@dataclass(frozen=True)
class WheelFacts:
    """The vendored facts of one pinned distribution."""

    pythons: tuple[str, ...]  # Pythons of PYTHONS with a wheel on PLATFORM
    requires_dist: tuple[str, ...]  # the wheel's Requires-Dist lines

    def cuda_majors(self) -> dict[str, int]:
        """What the wheel's CUDA extras name: {"nvidia-cuda-runtime-cu12": 12, "nvidia-cudnn-cu12": 12}."""
        majors = {}
        for line in self.requires_dist:
            requirement = Requirement(line)
            runtime, cudnn = CUDA_RUNTIME.match(requirement.name), CUDNN.match(requirement.name)
            if runtime:  # nvidia-cuda-runtime-cu12~=12.0, or (CUDA 13 builds) nvidia-cuda-runtime~=13.0
                versions = [spec.version for spec in requirement.specifier]
                major = runtime.group(1) or (versions[0].split(".")[0] if versions else None)
                if major is not None:
                    majors[requirement.name] = int(major)
            elif cudnn:
                majors[requirement.name] = int(cudnn.group(1))
        return majors


def read_wheels(path: Path = WHEELS_FILE) -> dict[str, WheelFacts]:
    """"name==version" -> WheelFacts, from the vendored file."""
    entries = json.loads(path.read_text())["wheels"]
    return {pin: WheelFacts(tuple(entry["pythons"]), tuple(entry["requires_dist"])) for pin, entry in entries.items()}


def constraint_pins(path: Path = GPU_CONSTRAINTS) -> dict[str, str]:
    """Distribution name -> its "name==version" line in a constraints file (comments and blanks skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name] = line
    return pins


def pin_problems(release: TritonRelease, pin: str, wheel: WheelFacts | None) -> list[str]:
    """Why `pin` (a "name==version" line) cannot run on the image of `release`; [] when it can."""
    if wheel is None:
        return [f"{pin}: no vendored wheel metadata in {WHEELS_FILE.name}; refresh it (python -m "
                f"tests.deploy.gpu_runtime {pin} ...)"]
    problems = []
    if release.python not in wheel.pythons:
        problems.append(f"{pin} has no wheel for the image's Python {release.python} (only {list(wheel.pythons)})")
    majors = wheel.cuda_majors()
    if not majors:
        problems.append(f"{pin}: its Requires-Dist names no CUDA runtime, so its CUDA cannot be checked")
    for name, major in sorted(majors.items()):
        if major != release.cuda_major:
            problems.append(f"{pin} is a CUDA {major} build ({name}) but the image has CUDA {release.cuda}")
    return problems


def lookup(requirement: str, python: str) -> list[str] | None:
    """The Requires-Dist lines of `requirement`'s wheel for `python` on PLATFORM; None when there is no such wheel.

    pip resolves without installing (--dry-run) and reports the wheel's METADATA; with --no-deps only that wheel."""
    with tempfile.TemporaryDirectory() as temp:
        report = Path(temp) / "report.json"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--no-deps",
             "--only-binary=:all:", "--python-version", python, "--platform", PLATFORM, "--target", temp,
             "--report", str(report), requirement], capture_output=True, text=True)
        if result.returncode != 0:
            if "No matching distribution" in result.stderr:
                return None
            raise RuntimeError(f"pip failed for {requirement} (Python {python}): {result.stderr.strip()}")
        return list(json.loads(report.read_text())["install"][0]["metadata"].get("requires_dist", []))


def refresh(requirements: list[str], path: Path = WHEELS_FILE) -> None:
    wheels = {}
    for requirement in requirements:
        found = {python: lookup(requirement, python) for python in PYTHONS}
        pythons = [python for python, lines in found.items() if lines is not None]
        if not pythons:
            raise SystemExit(f"{requirement}: no wheel for any of {PYTHONS} on {PLATFORM}")
        wheels[requirement] = {"pythons": pythons, "requires_dist": found[pythons[0]]}
        print(f"{requirement}: Python {', '.join(pythons)}", file=sys.stderr)
    text = {"about": "Wheel metadata for tests/deploy/test_gpu_runtime.py; refresh: see tests/deploy/gpu_runtime.py",
            "platform": PLATFORM, "wheels": wheels}
    path.write_text(json.dumps(text, indent=1) + "\n")


if __name__ == "__main__":
    refresh(sys.argv[1:])
