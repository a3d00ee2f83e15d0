"""The Python-backend ONNX Runtime runner: its helpers directly, and its behaviour inside the real Triton server.

The test model is a small ONNX graph built with onnx.helper (no torch): image UINT8 [B, 3, 8, 8] -> per-channel
means FP32 [B, 3]. Its config declares the image dims as [3, -1, -1] so that a request of the wrong size gets past
Triton's own checks and reaches the runner, as a malformed request to a more permissive config would.
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import json_format
from onnx import TensorProto, helper

from contracts.triton_config import config_from_json, parse_config, runs_on
from lomar_serve.triton import TritonServer, TritonServerConfig
from lomar_serve.triton.distribution import find_distribution

SIZE = 8
CONFIG = """
name: "means"
backend: "python"
max_batch_size: 16
input [ { name: "image" data_type: TYPE_UINT8 dims: [ 3, -1, -1 ] } ]
output [ { name: "means" data_type: TYPE_FP32 dims: [ 3 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
dynamic_batching { max_queue_delay_microseconds: 200000 }
parameters { key: "intra_op_threads" value { string_value: "1" } }
parameters { key: "force_spinning_stop" value { string_value: "1" } }
"""


@pytest.fixture(scope="module")
def runner():
    """The runner module, importable outside Triton with the backend's own triton_python_backend_utils."""
    sys.path.insert(0, str(find_distribution().python_backend))
    try:
        yield importlib.import_module("lomar_serve.triton.onnx_runner")
    finally:
        sys.path.remove(str(find_distribution().python_backend))


def means_model(path: Path) -> None:
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 3, SIZE, SIZE])
    means = helper.make_tensor_value_info("means", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[2, 3], keepdims=0)],
        "means", [image], [means])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def expected_means(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32).mean(axis=(2, 3))


def test_input_spec_explains_bad_arrays(runner):
    spec = runner.InputSpec("image", np.uint8, (3, SIZE, SIZE))
    assert spec.problem(np.zeros((2, 3, SIZE, SIZE), np.uint8)) is None
    assert "missing" in spec.problem(None)
    assert "uint8" in spec.problem(np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert "shape [B, 3, 8, 8]" in spec.problem(np.zeros((2, 3, SIZE, SIZE + 1), np.uint8))
    assert runner.InputSpec("image", np.uint8, (3, -1, -1)).problem(np.zeros((1, 3, 5, 9), np.uint8)) is None


def test_run_batched_splits_outputs_per_request(runner, tmp_path):
    means_model(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)} for n in (1, 3, 2)]
    results = runner.run_batched(session, feeds, ["means"])
    assert [r["means"].shape for r in results] == [(1, 3), (3, 3), (2, 3)]
    for feed, result in zip(feeds, results):
        np.testing.assert_allclose(result["means"], expected_means(feed["image"]), rtol=1e-6)


def test_settings_come_from_config_parameters(runner):
    config = {"parameters": {"intra_op_threads": {"string_value": "2"},
                             "execution_provider": {"string_value": "cpu"}}}
    settings = runner.RunnerSettings.from_model_config(config)
    assert (settings.intra_op_threads, settings.inter_op_threads) == (2, 0)
    assert settings.providers("CPU", device_id=0) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="execution_provider"):
        runner.RunnerSettings.from_model_config({"parameters": {"execution_provider": {"string_value": "tpu"}}})


def test_threads_stop_spinning_after_a_run_when_the_config_says_so(runner):
    entry = "session.force_spinning_stop"
    default = runner.RunnerSettings.from_model_config({"parameters": {}})
    assert default.session_options().get_session_config_entry(entry) == "0"  # ONNX Runtime's own default
    quiet = runner.RunnerSettings.from_model_config({"parameters": {"force_spinning_stop": {"string_value": "1"},
                                                                    "intra_op_threads": {"string_value": "2"}}})
    options = quiet.session_options()
    assert options.get_session_config_entry(entry) == "1" and options.intra_op_num_threads == 2
    with pytest.raises(ValueError, match="force_spinning_stop"):
        runner.RunnerSettings.from_model_config({"parameters": {"force_spinning_stop": {"string_value": "yes"}}})


def model_config(kind: str, provider: str | None) -> dict:
    """A real config.pbtxt in the JSON form Triton hands the runner (args["model_config"])."""
    text = CONFIG.replace("KIND_CPU", kind)
    if provider is not None:
        text += f'parameters {{ key: "execution_provider" value {{ string_value: "{provider}" }} }}\n'
    return json_format.MessageToDict(parse_config(text), preserving_proto_field_name=True)


@pytest.mark.parametrize("kind, provider", [("KIND_GPU", None), ("KIND_GPU", "auto"), ("KIND_CPU", "cuda"),
                                            ("KIND_GPU", "cuda")])
def test_a_model_configured_for_the_gpu_refuses_a_session_on_the_cpu(runner, tmp_path, kind, provider):
    """The situation of a CPU-only onnxruntime (this machine's): ONNX Runtime gives a CPU session with a warning;
    the runner looks at the providers the session actually runs on and refuses, saying what and why."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: the refusal needs a build without it")
    means_model(tmp_path / "model.onnx")
    settings = runner.RunnerSettings.from_model_config(model_config(kind, provider))
    instance_kind = kind.removeprefix("KIND_")
    with pytest.raises(runner.ProviderError) as refused:
        runner.open_session(str(tmp_path / "model.onnx"), settings, instance_kind, device_id=0)
    message = str(refused.value)
    assert (f"CUDAExecutionProvider was asked for (instance kind {instance_kind}, execution_provider "
            f"{provider or 'auto'!r})") in message
    assert "runs on ['CPUExecutionProvider']" in message
    assert f"this onnxruntime {ort.__version__} has no CUDAExecutionProvider" in message
    assert "install onnxruntime-gpu" in message


def test_cpu_instances_run_on_the_cpu_and_a_contradiction_is_refused(runner, tmp_path):
    means_model(tmp_path / "model.onnx")
    for provider in (None, "auto", "cpu"):
        settings = runner.RunnerSettings.from_model_config(model_config("KIND_CPU", provider))
        session = runner.open_session(str(tmp_path / "model.onnx"), settings, "CPU", device_id=0)
        assert session.get_providers() == ["CPUExecutionProvider"]
    settings = runner.RunnerSettings.from_model_config(model_config("KIND_GPU", "cpu"))
    with pytest.raises(runner.ProviderError, match="contradicts the KIND_GPU instance group"):
        runner.open_session(str(tmp_path / "model.onnx"), settings, "GPU", device_id=0)


def test_a_gpu_build_that_cannot_load_cuda_is_told_apart(runner):
    """A GPU build lists CUDA among its available providers even where its libraries cannot load (the image's
    latent defect: a CUDA 13 build on a CUDA 12 image): the message then points at the libraries."""
    message = runner.refusal("CUDAExecutionProvider", "instance kind GPU, execution_provider 'auto'",
                             ["CPUExecutionProvider"], ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                        "CPUExecutionProvider"], "1.30.0")
    assert "onnxruntime 1.30.0 lists CUDAExecutionProvider but could not load it" in message
    assert "CUDA or cuDNN libraries" in message and "constraints-gpu.txt" in message


@pytest.mark.parametrize("kind", ["KIND_CPU", "KIND_GPU"])
@pytest.mark.parametrize("provider", [None, "auto", "cuda", "cpu"])
def test_the_runner_enforces_what_the_config_contract_reports(runner, kind, provider):
    """contracts/triton_config.py `runs_on` (what /v1/models shows) and the runner (which refuses anything else)
    state one rule twice, because the runner is copied into repositories and imports nothing of the project."""
    config = model_config(kind, provider)
    settings = runner.RunnerSettings.from_model_config(config)
    if kind == "KIND_GPU" and provider == "cpu":
        with pytest.raises(runner.ProviderError):
            settings.wanted("GPU")
        return
    assert runs_on(config_from_json(config)) == (settings.wanted(kind.removeprefix("KIND_")),)


@pytest.mark.e2e
def test_runner_batches_requests_and_survives_a_bad_one(tmp_path):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    version = tmp_path / "repo" / "means" / "1"
    version.mkdir(parents=True)
    (version.parent / "config.pbtxt").write_text(CONFIG)
    means_model(version / "model.onnx")
    shutil.copyfile(Path(importlib.util.find_spec("lomar_serve.triton.onnx_runner").origin), version / "model.py")

    def infer(images: np.ndarray) -> np.ndarray:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            tensor = httpclient.InferInput("image", list(images.shape), "UINT8")
            tensor.set_data_from_numpy(images)
            return client.infer("means", [tensor]).as_numpy("means")
        finally:
            client.close()

    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8) for n in (1, 2, 3, 1, 2, 3)]
    with TritonServer(TritonServerConfig(model_repository=tmp_path / "repo"), log_path=tmp_path / "log") as server:
        with ThreadPoolExecutor(len(batches)) as pool:
            results = list(pool.map(infer, batches))
        for images, result in zip(batches, results):
            np.testing.assert_allclose(result, expected_means(images), rtol=1e-6)
        client = httpclient.InferenceServerClient(server.http_url)
        stats = client.get_inference_statistics("means")["model_stats"][0]
        assert stats["inference_count"] == sum(len(b) for b in batches)
        assert stats["execution_count"] < len(batches), "the dynamic batcher never merged requests"

        with pytest.raises(InferenceServerException, match="inference failed"):
            infer(np.zeros((1, 3, SIZE + 1, SIZE), np.uint8))  # reaches ONNX Runtime, which refuses the shape
        assert client.is_model_ready("means")
        np.testing.assert_allclose(infer(batches[2]), expected_means(batches[2]), rtol=1e-6)
        client.close()


@pytest.mark.e2e
def test_triton_model_status_says_why_a_gpu_model_did_not_load(tmp_path):
    """In the real Triton: a model whose config asks for CUDA (the `execution_provider` setting) fails to load with
    the runner's reason in the repository index, beside a CPU model that loads. A KIND_GPU model on a machine
    without a GPU is refused by Triton itself, before the runner runs; the test records which of the two spoke."""
    import tritonclient.http as httpclient

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: the refusal needs a build without it")
    runner_file = Path(importlib.util.find_spec("lomar_serve.triton.onnx_runner").origin)
    models = {"on_cpu": ("KIND_CPU", "auto"), "asks_cuda": ("KIND_CPU", "cuda"), "gpu_group": ("KIND_GPU", "auto")}
    for name, (kind, provider) in models.items():
        version = tmp_path / "repo" / name / "1"
        version.mkdir(parents=True)
        config = CONFIG.replace('"means"', f'"{name}"', 1).replace("KIND_CPU", kind)
        config += f'parameters {{ key: "execution_provider" value {{ string_value: "{provider}" }} }}\n'
        (version.parent / "config.pbtxt").write_text(config)
        means_model(version / "model.onnx")
        shutil.copyfile(runner_file, version / "model.py")
    config = TritonServerConfig(model_repository=tmp_path / "repo", exit_on_error=False, strict_readiness=False)
    with TritonServer(config, log_path=tmp_path / "log") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            index = {entry["name"]: entry for entry in client.get_model_repository_index()}
        finally:
            client.close()
    assert index["on_cpu"]["state"] == "READY"
    refused = index["asks_cuda"]
    assert refused["state"] == "UNAVAILABLE"
    assert "ProviderError" in refused["reason"] and "CUDAExecutionProvider was asked for" in refused["reason"]
    assert "runs on ['CPUExecutionProvider']" in refused["reason"]
    gpu = index["gpu_group"]
    assert gpu["state"] == "UNAVAILABLE"
    assert ("has kind KIND_GPU but no GPUs are available" in gpu["reason"]  # Triton, on a machine without a GPU
            or "CUDAExecutionProvider was asked for" in gpu["reason"]), gpu["reason"]  # the runner, with one
