"""`lomar export` end to end on small checkpoints: versions, labels, flavours, and the failures that write nothing."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import export.pipeline
from export.cli import main
from contracts.model_card import ModelCard
from contracts.model_repository import CONFIG_FILE, LABELS_FILE
from export.errors import ExportError, UnsupportedCombinationError, VerificationError
from export.pipeline import ExportOptions, export_checkpoint
from contracts.triton_config import runs_on
from export.triton_config import parse_pbtxt
from tritonclient.grpc import model_config_pb2 as pb
from lomar_serve.cli import main as lomar_main
from training.errors import CheckpointError

from tests.export.conftest import TINY_CLASSES


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content (empty if `root` does not exist)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_exports_twice_as_versions_1_and_2(tiny_checkpoint, tmp_path, capsys):
    argv = ["export", "--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out", str(tmp_path)]
    assert lomar_main(argv) == 0
    assert lomar_main(argv) == 0
    assert "exported lomar_classifier version 2" in capsys.readouterr().out
    model_dir = tmp_path / "lomar_classifier"
    for version in ("1", "2"):
        assert sorted(p.name for p in (model_dir / version).iterdir()) == ["model.onnx", "model.py",
                                                                            "model_card.json"]
    assert (model_dir / LABELS_FILE).read_text().split() == TINY_CLASSES
    runner = Path(export.pipeline.runner_source()).read_bytes()
    assert (model_dir / "2" / "model.py").read_bytes() == runner  # the one shared runner, copied verbatim
    assert parse_pbtxt((model_dir / CONFIG_FILE).read_text()).input[0].dims == [3, 112, 112]


def test_gpu_device_config_is_set_for_gpu_throughput(tiny_checkpoint, tmp_path):
    """--device gpu: a KIND_GPU group of two instances, batches up to 64 with no preferred size and a short queue
    delay; the runner then refuses to load anywhere but on CUDA (contracts/triton_config.py runs_on)."""
    argv = ["export", "--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out", str(tmp_path / "gpu"),
            "--device", "gpu", "--precision", "fp16"]
    assert lomar_main(argv) == 0
    config = parse_pbtxt((tmp_path / "gpu" / "lomar_classifier" / CONFIG_FILE).read_text())
    assert config.backend == "python" and config.max_batch_size == 64
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 2)]
    assert list(config.dynamic_batching.preferred_batch_size) == []
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.parameters["force_spinning_stop"].string_value == "0"
    assert runs_on(config) == ("CUDAExecutionProvider",)
    assert ModelCard.read(tmp_path / "gpu" / "lomar_classifier" / "1").precision == "fp16"
    # a new version without --device (a retrain job's export) keeps the model on the GPU
    assert lomar_main(argv[:-4]) == 0
    again = parse_pbtxt((tmp_path / "gpu" / "lomar_classifier" / CONFIG_FILE).read_text())
    assert [(g.kind, g.count) for g in again.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 2)]

    assert lomar_main(["export", "--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out",
                       str(tmp_path / "cpu")]) == 0
    config = parse_pbtxt((tmp_path / "cpu" / "lomar_classifier" / CONFIG_FILE).read_text())
    assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.parameters["force_spinning_stop"].string_value == "1"  # spinning would take the gateway's cores
    assert runs_on(config) == ("CPUExecutionProvider",)


def test_explicit_batching_options_override_the_device_profile(tmp_path):
    options = ExportOptions(checkpoint=tmp_path / "x.pth", task="classify", out=tmp_path, device="gpu",
                            max_batch_size=16, instances=3)
    assert (options.max_batch_size, options.instances, options.max_queue_delay_us) == (16, 3, 500)
    assert ExportOptions(checkpoint=tmp_path / "x.pth", task="classify", out=tmp_path,
                         backend="onnxruntime").device_name == "gpu"


def test_labels_file_and_image_size_options(tiny_checkpoint, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("rose\ntulip\ndaisy\n")
    published = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path / "repo",
                                                labels_file=labels, image_size=64, name="flowers"))
    card = ModelCard.read(published.path)
    assert card.classes == ("rose", "tulip", "daisy") and card.image_size == (64, 64)
    assert card.inputs["image"].dims == (3, 64, 64) and card.outputs["logits"].dims == (3,)
    assert card.source_checkpoint == tiny_checkpoint.name  # the file name: no path of the building machine
    assert str(tiny_checkpoint.parent) not in (published.path / "model_card.json").read_text()
    assert (tmp_path / "repo" / "flowers" / LABELS_FILE).read_text() == "rose\ntulip\ndaisy\n"


def test_onnxruntime_flavour_writes_no_runner(tiny_checkpoint, tmp_path):
    published = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path,
                                                backend="onnxruntime", ort_tensorrt=True))
    assert not (published.path / "model.py").exists()
    parsed = parse_pbtxt((published.path.parent / CONFIG_FILE).read_text())
    assert parsed.backend == "onnxruntime"
    assert parsed.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"


def test_failed_verification_leaves_the_repository_untouched(tiny_checkpoint, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=repo))
    before = snapshot(repo)
    real_export = export.pipeline.export_onnx

    def corrupted_export(*args, **kwargs):
        """The real export, then one weight of the graph doubled: a subtly wrong model."""
        real_export(*args, **kwargs)
        path = args[4]
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: int(numpy_helper.to_array(t).size))
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, weight.name))
        onnx.save(model, str(path))

    monkeypatch.setattr(export.pipeline, "export_onnx", corrupted_export)
    with pytest.raises(VerificationError, match="does not match PyTorch"):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=repo))
    assert snapshot(repo) == before
    with pytest.raises(VerificationError):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()


def test_fp16_graph_off_by_more_than_rounding_fails_its_tolerance(tiny_checkpoint, tmp_path, monkeypatch):
    """A 3% error in one fp16 weight: cosine stays high, the relative tolerance catches it; nothing is written."""
    real_convert = export.pipeline.convert_to_fp16

    def skewed_convert(source, target):
        conversion = real_convert(source, target)
        model = onnx.load(str(target))
        weight = max(model.graph.initializer, key=lambda t: int(numpy_helper.to_array(t).size))
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float16(1.03), weight.name))
        onnx.save(model, str(target))
        return conversion

    monkeypatch.setattr(export.pipeline, "convert_to_fp16", skewed_convert)
    with pytest.raises(VerificationError, match="of the output's range > 1%"):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path / "repo",
                                        precision="fp16"))
    assert not (tmp_path / "repo").exists()


def test_zero_tolerance_fails_verification_and_writes_nothing(tiny_checkpoint, tmp_path):
    with pytest.raises(VerificationError, match="max abs diff"):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path / "repo",
                                        tolerance=0.0))
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--format", "tensorrt", "--backend", "python"], "only Triton's tensorrt backend"),
    (["--backend", "tensorrt"], "needs --format tensorrt"),
    (["--ort-tensorrt"], "needs --backend onnxruntime"),
    (["--image-size", "100"], "not a multiple of the patch size"),
    (["--max-batch-size", "0"], ">= 1"),
    (["--format", "tensorrt", "--device", "cpu"], "runs on a GPU only"),
])
def test_cli_reports_impossible_requests_clearly(tiny_checkpoint, tmp_path, capsys, extra, message):
    argv = ["--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out", str(tmp_path / "repo"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_format_without_tensorrt_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(tiny_checkpoint), "--task", "classify", "--out", str(tmp_path), "--format", "tensorrt"]
    assert main(argv) == 2
    assert "needs NVIDIA TensorRT, which is not installed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engine_export(tiny_checkpoint, tmp_path):
    published = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path,
                                                format="tensorrt", max_batch_size=8))
    card = json.loads((published.path / "model_card.json").read_text())
    assert (published.path / "model.plan").stat().st_size > 0 and card["parity"]["tensorrt"]["precision"] == "fp16"
    assert parse_pbtxt((published.path.parent / CONFIG_FILE).read_text()).platform == "tensorrt_plan"


def test_options_refuse_labels_for_reconstruction(tmp_path):
    with pytest.raises(UnsupportedCombinationError, match="--labels"):
        ExportOptions(checkpoint=tmp_path / "x.pth", task="reconstruct", out=tmp_path, labels_file=tmp_path / "l")
    with pytest.raises(ExportError, match="--name"):
        ExportOptions(checkpoint=tmp_path / "x.pth", task="classify", out=tmp_path, name="../escape")


def test_wrong_label_count_is_refused(tiny_checkpoint, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("only\ntwo\n")
    with pytest.raises(ExportError, match="2 labels but the model has 3 classes"):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, task="classify", out=tmp_path / "repo",
                                        labels_file=labels))


def test_task_and_checkpoint_kind_must_agree(official_dir, tmp_path):
    with pytest.raises(CheckpointError, match="pretrained checkpoint"):
        export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth", task="classify",
                                        out=tmp_path))
    with pytest.raises(ExportError, match="at least 7x7"):
        export_checkpoint(ExportOptions(checkpoint=official_dir / "official_pretrained.pth", task="reconstruct",
                                        out=tmp_path, image_size=96))
