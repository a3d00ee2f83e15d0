"""Exported repositories load in the real Triton bundled with nvidia-pytriton and serve the exported models."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from lomar_serve.triton import TritonServer, TritonServerConfig

pytestmark = pytest.mark.e2e
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def server(served_repo, official_classifier, official_reconstruction, official_fused_classifier, tiny_classifier,
           tmp_path_factory):
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with TritonServer(TritonServerConfig(model_repository=served_repo), log_path=log) as running:
        yield running


def test_classifier_logits_through_http_match_reference(server, reference_outputs):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        images = reference_outputs["images_uint8"]
        tensor = httpclient.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)  # binary tensor data (never large JSON tensors)
        result = client.infer("lomar_classifier", [tensor])
        np.testing.assert_allclose(result.as_numpy("logits"), reference_outputs["logits"], atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(result.as_numpy("embedding"), reference_outputs["features"], atol=TOLERANCE,
                                   rtol=0)
        top = client.infer("lomar_classifier", [tensor],
                           outputs=[httpclient.InferRequestedOutput("logits", class_count=1)]).as_numpy("logits")
        expected = reference_outputs["logits"].argmax(axis=1)
        assert [entry[0].decode().split(":")[1:] for entry in top] == [[str(i), f"class_{i}"] for i in expected]
    finally:
        client.close()


def test_fused_graph_serves_the_reference_outputs(server, reference_outputs):
    """The ort_fused graph (ONNX Runtime's MultiHeadAttention) runs in the Python backend's ONNX Runtime."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        images = reference_outputs["images_uint8"]
        tensor = httpclient.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer("fused_classifier", [tensor])
        np.testing.assert_allclose(result.as_numpy("logits"), reference_outputs["logits"], atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(result.as_numpy("embedding"), reference_outputs["features"], atol=TOLERANCE,
                                   rtol=0)
    finally:
        client.close()


def test_labels_from_checkpoint_class_names(server, tiny_classifier):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        images = np.random.default_rng(0).integers(0, 256, (2, 3, 112, 112), dtype=np.uint8)
        tensor = httpclient.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        top = client.infer("tiny_classifier", [tensor],
                           outputs=[httpclient.InferRequestedOutput("logits", class_count=3)]).as_numpy("logits")
        assert {entry.decode().split(":")[2] for entry in top[0]} == {"cat", "dog", "bird"}
    finally:
        client.close()


def test_reconstruction_through_grpc_matches_onnx_runtime(server, official_reconstruction):
    import tritonclient.grpc as grpcclient

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 3, 224, 224), dtype=np.uint8)
    mask = rng.random((2, 14, 14)) < 0.75
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inputs = [grpcclient.InferInput("image", list(images.shape), "UINT8"),
                  grpcclient.InferInput("mask", list(mask.shape), "BOOL")]
        inputs[0].set_data_from_numpy(images)
        inputs[1].set_data_from_numpy(mask)
        result = client.infer("lomar_reconstruction", inputs)
    finally:
        client.close()
    session = ort.InferenceSession(str(official_reconstruction.path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    patches, reconstruction = session.run(None, {"image": images, "mask": mask})
    np.testing.assert_allclose(result.as_numpy("patches"), patches, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(result.as_numpy("reconstruction"), reconstruction, atol=1e-3, rtol=0)
