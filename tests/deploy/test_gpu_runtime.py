"""The serving image's GPU runtime agrees with its base image: the onnxruntime-gpu pin (constraints-gpu.txt) is a
build for the CUDA major and the Python of the Triton release the Dockerfile starts FROM, and the serving stage
installs it under that pin.

A CUDA 13 build on a CUDA 12 image would list CUDAExecutionProvider and then fail to load it, and ONNX Runtime
would run the model on the CPU: this is checked here from the files, with the wheels' metadata vendored in
tests/deploy/gpu_wheels.json (refresh: tests/deploy/gpu_runtime.py), so no network is needed.
"""
from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.deploy.fleet import REPO, base_image, dockerfile_stages
from tests.deploy.gpu_runtime import (GPU_CONSTRAINTS, TRITON_RELEASES, TritonRelease, constraint_pins, pin_problems,
                                      read_wheels)

ORT_GPU = "onnxruntime-gpu"


def image_release() -> TritonRelease:
    image = base_image()
    match = re.search(r"tritonserver:(\d{2}\.\d{2})-py3(?:@sha256:[0-9a-f]{64})?$", image)
    assert match, f"the base image {image} is not one of NVIDIA's Triton containers (tritonserver:<yy.mm>-py3)"
    release = TRITON_RELEASES.get(match.group(1))
    assert release is not None, (f"Triton {match.group(1)} is not in tests/deploy/gpu_runtime.py TRITON_RELEASES: "
                                 "add its CUDA and Python (from its release notes) first")
    return release


def test_onnxruntime_gpu_pin_is_a_build_for_the_base_images_cuda_and_python() -> None:
    pin = constraint_pins().get(ORT_GPU)
    assert pin is not None and re.fullmatch(rf"{ORT_GPU}==[\w.]+", pin), \
        f"{GPU_CONSTRAINTS.name} must pin {ORT_GPU} to one version (==), got {pin!r}"
    problems = pin_problems(image_release(), pin, read_wheels().get(pin))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("pin, expected", [
    ("onnxruntime-gpu==1.30.0", ["is a CUDA 13 build (nvidia-cuda-runtime)", "is a CUDA 13 build (nvidia-cudnn-cu13)",
                                 "no wheel for the image's Python 3.10"]),
    ("onnxruntime-gpu==1.27.0", ["is a CUDA 13 build (nvidia-cuda-runtime-cu13)"]),
    ("onnxruntime-gpu==1.24.4", ["no wheel for the image's Python 3.10"]),
    ("onnxruntime-gpu==9.9.9", ["no vendored wheel metadata"]),
])
def test_a_pin_that_cannot_run_on_the_image_is_refused(pin: str, expected: list[str]) -> None:
    """The check itself, on the vendored metadata of real releases: what a bump of the pin would hit."""
    problems = "\n".join(pin_problems(TRITON_RELEASES["24.10"], pin, read_wheels().get(pin)))
    for text in expected:
        assert text in problems, problems


def test_serving_stage_installs_the_gpu_extra_under_the_pin() -> None:
    stages = dockerfile_stages()
    assert any(GPU_CONSTRAINTS.name in value.split() for value in stages["base"].values("COPY")), \
        f"{GPU_CONSTRAINTS.name} is not copied into the image"
    installs = [command for value in stages["serving"].values("RUN")
                for command in value.split("&&") if '".[gpu]"' in command or " .[gpu]" in command]
    assert installs, "the serving stage does not install the gpu extra"
    for command in installs:
        assert f"--constraint {GPU_CONSTRAINTS.name}" in command, command
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    wanted = next(Requirement(line) for line in extra if Requirement(line).name == ORT_GPU)
    pinned = Requirement(constraint_pins()[ORT_GPU])
    assert all(wanted.specifier.contains(spec.version) for spec in pinned.specifier), \
        f"the gpu extra ({wanted}) excludes the pin ({pinned})"


def test_worker_torch_wheels_match_the_base_images_cuda() -> None:
    """The worker's torch comes from the CUDA wheel index of the same major as the image's CUDA."""
    index = next(value for value in dockerfile_stages()["worker"].values("ARG") if value.startswith("TORCH_INDEX_URL="))
    match = re.search(r"/whl/cu(\d+)(\d)$", index)
    assert match, index
    assert int(match.group(1)) == image_release().cuda_major, f"{index} against CUDA {image_release().cuda}"
