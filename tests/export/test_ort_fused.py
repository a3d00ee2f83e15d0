"""The ort_fused graph (export/ort_fused.py): one MultiHeadAttention per layer fed by the iRPE bias, run by ONNX
Runtime on the CPU, against the paper's reference outputs and PyTorch; the failures that write nothing."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import export.pipeline
from contracts.model_card import ModelCard
from export.cli import main
from export.errors import ExportError, VerificationError
from export.ort_fused import (ATTENTION_BIAS_INPUT, CONTRIB_DOMAIN, GRAPH, FusedIRPEAttention, fuse_attention,
                              fused_nodes)
from export.pipeline import ExportOptions, export_checkpoint
from export.verify import FP32_TOLERANCE
from export.wrappers import ClassifierExport
from training.models import create_model, load_classifier

from tests.export.test_onnx_parity import assert_reference_windows, session


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


@pytest.fixture(scope="module")
def fused_classifier(official_dir, tmp_path_factory):
    return export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                           out=tmp_path_factory.mktemp("repo"), graph=GRAPH))


def test_each_attention_layer_is_one_fused_node_fed_by_the_bias(fused_classifier, reference_meta):
    model = onnx.load(str(fused_classifier.path / "model.onnx"))
    nodes = fused_nodes(model)
    assert len(nodes) == reference_meta["depth"]
    assert {op.domain: op.version for op in model.opset_import}[CONTRIB_DOMAIN] == 1
    made_by = producers(model)
    for node in nodes:
        assert node.input[3] == node.input[4] == ""  # projection bias and key padding mask left out
        assert made_by[node.input[ATTENTION_BIAS_INPUT]].op_type == "GatherElements"  # the iRPE term
        assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}["num_heads"] == \
            reference_meta["num_heads"]
    assert not [node for node in model.graph.node if node.op_type == "Softmax"]  # no attention left outside


def test_fused_graph_reproduces_the_reference_outputs(fused_classifier, reference_outputs):
    images = reference_outputs["images_uint8"]  # batch 3: neither the example's nor a verification size
    logits, embedding = session(fused_classifier.path / "model.onnx").run(None, {"image": images})
    np.testing.assert_allclose(logits, reference_outputs["logits"], atol=FP32_TOLERANCE, rtol=0)
    np.testing.assert_allclose(embedding, reference_outputs["features"], atol=FP32_TOLERANCE, rtol=0)


def test_card_records_the_graph_and_its_parity(fused_classifier):
    card = ModelCard.read(fused_classifier.path)
    assert card.graph == GRAPH and card.format == "onnx" and card.backend == "python"
    batches = card.parity["onnxruntime"]["batches"]
    assert [b["batch_size"] for b in batches] == [1, 8]
    assert all(o["max_abs_diff"] <= FP32_TOLERANCE for b in batches for o in b["outputs"].values())


def test_the_graph_computes_the_irpe_term(fused_classifier, official_dir, reference_outputs):
    """Without its iRPE tables the model gives other embeddings, and the graph gives the ones with them."""
    model = load_classifier(official_dir / "official_finetuned.pth")
    for block in model.blocks:
        block.attn.rpe_k.lookup_table_weight.data.zero_()
    images = reference_outputs["images_uint8"]
    with torch.no_grad():
        _, without_term = ClassifierExport(model)(torch.from_numpy(images))
    _, embedding = session(fused_classifier.path / "model.onnx").run(None, {"image": images})
    assert np.abs(embedding - without_term.numpy()).max() > 10 * FP32_TOLERANCE  # 1.7e-3 with these tables
    np.testing.assert_allclose(embedding, reference_outputs["features"], atol=FP32_TOLERANCE, rtol=0)


def test_a_graph_that_drops_the_bias_fails_verification_and_writes_nothing(official_dir, tmp_path, monkeypatch):
    real_export = export.pipeline.export_ort_fused

    def without_bias(module, grid, example, input_names, output_names, path):
        """The real export, then every attention_bias input cut off."""
        real_export(module, grid, example, input_names, output_names, path)
        model = onnx.load(str(path))
        for node in fused_nodes(model):
            del node.input[3:]  # query, key and value left: attention without the iRPE term
        onnx.save(model, str(path))

    monkeypatch.setattr(export.pipeline, "export_ort_fused", without_bias)
    with pytest.raises(VerificationError, match="embedding: max abs diff"):
        export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                        out=tmp_path / "repo", graph=GRAPH))
    assert not (tmp_path / "repo").exists()


def test_reconstruction_graph_reproduces_the_reference_windows(official_dir, reference_outputs, reference_meta,
                                                               tmp_path):
    """Window attention (7 x 7 patches + class token) fused too: a 112 px export gives the paper's predictions."""
    published = export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth",
                                                task="reconstruct", out=tmp_path, image_size=112, graph=GRAPH))
    assert ModelCard.read(published.path).graph == GRAPH
    model_path = published.path / "model.onnx"
    assert len(fused_nodes(onnx.load(str(model_path)))) == reference_meta["depth"]
    assert_reference_windows(model_path, reference_outputs, reference_meta, FP32_TOLERANCE)


def test_fp16_fused_graph_passes_the_cosine_check(official_dir, tmp_path):
    published = export_checkpoint(ExportOptions(checkpoint=official_dir / "official_finetuned.pth", task="classify",
                                                out=tmp_path, precision="fp16", graph=GRAPH, backend="onnxruntime"))
    card = ModelCard.read(published.path)
    assert card.precision == "fp16" and card.graph == GRAPH and not (published.path / "model.py").exists()
    assert all(o["min_cosine"] >= 0.999 for b in card.parity["onnxruntime"]["batches"] for o in b["outputs"].values())
    model = onnx.load(str(published.path / "model.onnx"))
    assert fused_nodes(model) and any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


@pytest.mark.parametrize(("extra", "message"), [
    (["--graph", GRAPH, "--format", "tensorrt"], "TensorRT cannot build"),
    (["--graph", GRAPH, "--backend", "onnxruntime", "--ort-tensorrt"], "without --ort-tensorrt"),
    (["--graph", "fused"], "invalid choice"),
])
def test_cli_refuses_the_fused_graph_where_it_cannot_run(tiny_checkpoint, tmp_path, capsys, extra, message):
    argv = ["--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out", str(tmp_path / "repo"), *extra]
    if "invalid choice" in message:
        with pytest.raises(SystemExit):
            main(argv)
    else:
        assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_fused_module_matches_the_model_in_pytorch_and_refuses_another_grid():
    torch.manual_seed(0)
    model = create_model("lomar_tiny_patch16", depth=2, num_classes=3, img_size=64)
    for block in model.blocks:
        torch.nn.init.normal_(block.attn.rpe_k.lookup_table_weight, std=0.5)
    wrapper = ClassifierExport(model)
    fused = fuse_attention(wrapper, (4, 4))
    assert sum(isinstance(m, FusedIRPEAttention) for m in fused.modules()) == 2
    assert not any(isinstance(m, FusedIRPEAttention) for m in wrapper.modules())  # the original is left alone
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(fused(images), wrapper(images), atol=1e-6, rtol=0)
        with pytest.raises(ExportError, match="built for 17 tokens"):
            fused(torch.randint(0, 256, (1, 3, 80, 80), dtype=torch.uint8))


def test_a_module_without_lomar_attention_is_refused():
    with pytest.raises(ExportError, match="no LoMaR attention layer"):
        fuse_attention(torch.nn.Linear(2, 2), (2, 2))
