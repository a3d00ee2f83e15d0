"""Triton's model configuration (`config.pbtxt`) as the project reads it, and the serving version it publishes.

The serving version of a model is its config's version policy: `version_policy { specific { versions: N } }`.
That one field is the source of truth for what serves, followed by everything:
- every Triton start loads exactly the versions it names, so a version on disk that never passed a deploy's smoke
  test (a failed deploy, a failed job, a half-copied folder) is never loaded by a start and cannot stop one;
- the control plane's reconcile loop drives every running Triton to it (loads it where missing, unloads the rest),
  so it is the desired state, not only what a start reads;
- every gateway routes requests to it (re-read when the file changes);
- the control plane rewrites it, atomically, as the switch step of a deploy or rollback, after the new version
  has been loaded and smoke-tested on every Triton of the fleet;
- export sets it only for a model's first version (a new model must serve something); later exports leave it.

This is the one module of contracts/ that needs more than the core dependencies: Triton's protobuf schema, which
tritonclient[grpc] ships (the `serve` and `export` extras both have it; training never imports this module).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as pb

from contracts.model_repository import CONFIG_FILE

ModelConfig = pb.ModelConfig
LOCK_FILE = ".config.lock"  # per model: serialises read-modify-writes of config.pbtxt (export, deploy)


class ConfigError(ValueError):
    """A config.pbtxt that Triton's schema cannot read."""


def parse_config(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt text with Triton's schema. Raises ConfigError."""
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as error:
        raise ConfigError(f"invalid config.pbtxt: {error}") from error


def render_config(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def config_from_json(values: dict) -> pb.ModelConfig:
    """A config in the JSON form Triton's model-configuration API answers with. Raises ConfigError."""
    try:
        return json_format.ParseDict(values, pb.ModelConfig(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise ConfigError(f"invalid model configuration: {error}") from error


# What runs a loaded version, by backend. The Python-backend runner (lomar_serve/triton/onnx_runner.py, which cannot
# import this module: it is copied into model repositories) enforces the same rule: an instance that must run on
# CUDA refuses to load when its ONNX Runtime session does not, so a READY version runs where its config says.
CUDA_PROVIDER, CPU_PROVIDER, TRT_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"
TENSORRT_ENGINE = "TensorRT"  # a tensorrt_plan model: no ONNX Runtime involved


def runs_on(config: pb.ModelConfig) -> tuple[str, ...]:
    """What the instances of a loaded version run on, in instance-group order without repeats:
    ("CUDAExecutionProvider",), ("CPUExecutionProvider",), ("TensorRT",)...; () for a backend this project does not
    export or a config without instance groups (Triton fills them in when it loads the model).

    - python (the project's runner): `execution_provider` "cuda" -> CUDA, "cpu" -> CPU, "auto" (or unset) -> CUDA for
      KIND_GPU groups and the CPU for the others;
    - onnxruntime (Triton's backend): KIND_GPU -> CUDA, with TensorRT first when the TensorRT accelerator is set;
      the others -> CPU;
    - tensorrt_plan: TensorRT.
    """
    if config.platform == "tensorrt_plan" or config.backend == "tensorrt":
        return (TENSORRT_ENGINE,)
    gpu = pb.ModelInstanceGroup.KIND_GPU
    found: list[str] = []
    for group in config.instance_group:
        if config.backend == "python":
            parameter = config.parameters.get("execution_provider")
            setting = parameter.string_value if parameter is not None else "auto"
            on_cuda = setting == "cuda" or (setting == "auto" and group.kind == gpu)
            providers = [CUDA_PROVIDER if on_cuda else CPU_PROVIDER]
        elif config.backend == "onnxruntime":
            accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
            tensorrt = any(accelerator.name == "tensorrt" for accelerator in accelerators)
            if group.kind != gpu:
                providers = [CPU_PROVIDER]
            else:
                providers = [TRT_PROVIDER, CUDA_PROVIDER] if tensorrt else [CUDA_PROVIDER]
        else:
            return ()
        found += [provider for provider in providers if provider not in found]
    return tuple(found)


def serving_versions(config: pb.ModelConfig) -> tuple[int, ...] | None:
    """The versions a `specific` policy names (ascending); None for Triton's `latest`/`all` policies."""
    if config.version_policy.WhichOneof("policy_choice") != "specific":
        return None
    return tuple(sorted(int(v) for v in config.version_policy.specific.versions))


def set_serving_versions(config: pb.ModelConfig, versions: tuple[int, ...]) -> pb.ModelConfig:
    """A copy of `config` whose version policy serves exactly `versions`."""
    if not versions or any(int(v) < 1 for v in versions):
        raise ConfigError(f"a version policy needs positive versions, got {versions}")
    updated = pb.ModelConfig()
    updated.CopyFrom(config)
    updated.version_policy.ClearField("policy_choice")
    updated.version_policy.specific.versions.extend(sorted({int(v) for v in versions}))
    return updated


def read_serving_version(model_dir: Path) -> str | None:
    """The one version REPO/NAME/config.pbtxt publishes as serving ("3"); None when there is no config, it
    cannot be read, or it does not name exactly one version (Triton's own policy applies then)."""
    try:
        versions = serving_versions(parse_config((Path(model_dir) / CONFIG_FILE).read_text()))
    except (OSError, ConfigError, UnicodeDecodeError):
        return None
    return str(versions[0]) if versions is not None and len(versions) == 1 else None


@contextmanager
def config_lock(model_dir: Path) -> Iterator[None]:
    """Hold the model's config lock: an export that keeps the serving version and a deploy that changes it must
    not interleave their read-modify-write of config.pbtxt (the later write would undo the earlier one)."""
    with open(Path(model_dir) / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_serving_version(model_dir: Path, version: int | str) -> None:
    """Make REPO/NAME/config.pbtxt name `version` as the one serving version (atomic replace, under the lock)."""
    path = Path(model_dir) / CONFIG_FILE
    with config_lock(model_dir):
        config = set_serving_versions(parse_config(path.read_text()), (int(version),))
        write_atomic(path, render_config(config))


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (temp file in the same directory, fsync, rename): a reader - Triton,
    a gateway on another host of a shared file system - sees the old file or the new one, never a part."""
    if path.is_file() and path.read_text() == text:
        return
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; Triton may run as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
