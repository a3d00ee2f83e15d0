"""Fine-tuning end to end: learning, starting from the official checkpoint, architecture checks, outputs."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from contracts.checkpoints import BEST_CHECKPOINT
from tests.training.conftest import TINY_MODEL, read_metrics
from training.encoder_init import InitCheckpoint, choose_head, load_encoder, read_init
from training.evaluate import main as evaluate_main
from training.finetune import main as finetune_main
from training.models import create_model, load_classifier, read_checkpoint, save_checkpoint

FAST = ["--num-workers", "0", "--no-progress", "--device", "cpu", "--log-every", "1", "--save-every-epochs", "0"]
PLAIN = ["--mixup", "0", "--cutmix", "0", "--auto-augment", "", "--reprob", "0", "--smoothing", "0"]


def test_loss_decreases_and_outputs_load(tmp_path, synth_split, capsys):
    out = tmp_path / "run"
    argv = TINY_MODEL + FAST + PLAIN + ["--data-dir", str(synth_split), "--output-dir", str(out), "--image-size", "32",
                                       "--batch-size", "8", "--epochs", "8", "--warmup-epochs", "1", "--lr", "3e-3",
                                       "--drop-path", "0"]
    assert finetune_main(argv) == 0
    losses = [record["loss"] for record in read_metrics(out)]
    assert len(losses) == 48
    assert sum(losses[-6:]) / 6 < 0.7 * sum(losses[:6]) / 6, losses
    val = read_metrics(out, "val")
    assert len(val) == 8 and {"top1", "top5", "loss"} <= set(val[-1]) and val[-1]["count"] == 16
    best = read_checkpoint(out / "checkpoint-best.pth")
    assert best["best_top1"] == max(record["top1"] for record in val)
    assert best["class_names"] == sorted(p.name for p in (synth_split / "train").iterdir())
    model = load_classifier(out / "checkpoint-last.pth")
    assert model.config.num_classes == 4 and model.config.img_size == 32

    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(out / "checkpoint-best.pth"), "--data-dir", str(synth_split),
                          "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "classifier" and result["count"] == 16
    assert result["top1"] == pytest.approx(best["best_top1"]) and result["top5"] >= result["top1"]


def test_finetune_from_official_pretrained(tmp_path, synth_split, official_dir, reference_meta):
    out = tmp_path / "run"
    init = official_dir / "official_pretrained.pth"
    argv = FAST + ["--data-dir", str(synth_split), "--output-dir", str(out), "--init", str(init),
                   "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2",
                   "--model-ema", "--model-ema-decay", "0.9"]  # default recipe: mixup, cutmix, RandAugment, erasing
    assert finetune_main(argv) == 0
    model = load_classifier(out / "checkpoint-last.pth")
    assert (model.config.embed_dim, model.config.depth, model.config.num_classes) == \
        (reference_meta["embed_dim"], reference_meta["depth"], 4)
    assert "model_ema" in read_checkpoint(out / "checkpoint-last.pth")
    assert "ema_top1" in read_metrics(out, "val")[0]


def micro_model(meta: dict, num_classes: int):
    """A classifier of the reference fixture's architecture (D, depth and heads from its meta.json)."""
    return create_model("lomar_tiny_patch16", embed_dim=meta["embed_dim"], depth=meta["depth"],
                        num_heads=meta["num_heads"], num_classes=num_classes)


def test_encoder_weights_come_from_the_init_checkpoint(official_dir, reference_meta):
    path = official_dir / "official_pretrained.pth"
    init = read_init(path)
    config, state = init.config, init.state
    model = micro_model(reference_meta, num_classes=3)
    load_encoder(model, state, path)
    last = reference_meta["depth"] - 1
    assert torch.equal(model.blocks[last].attn.rpe_k.lookup_table_weight,
                       state[f"blocks.{last}.attn.rpe_k.lookup_table_weight"])
    assert torch.equal(model.cls_token, state["cls_token"])
    assert config.depth == reference_meta["depth"] and config.embed_dim == reference_meta["embed_dim"]


def test_contradicting_model_is_a_clear_error(tmp_path, synth_split, official_dir, reference_meta, capsys):
    argv = FAST + ["--data-dir", str(synth_split), "--output-dir", str(tmp_path / "x"), "--image-size", "32",
                   "--init", str(official_dir / "official_pretrained.pth"), "--model", "lomar_small_patch16"]
    assert finetune_main(argv) == 2
    err = capsys.readouterr().err
    assert "--model lomar_small_patch16 contradicts the --init checkpoint" in err
    assert f"embed_dim 384 vs {reference_meta['embed_dim']}" in err


def test_pretrained_encoder_evaluation_reports_knn_and_linear_probe(tmp_path, synth_split, capsys):
    model = create_model("lomar_tiny_patch16", pretrain=True, depth=1, embed_dim=64, num_heads=2, img_size=32)
    save_checkpoint(tmp_path / "pre.pth", model)
    assert evaluate_main(["--checkpoint", str(tmp_path / "pre.pth"), "--data-dir", str(synth_split),
                          "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "pretrained" and (result["num_train"], result["num_test"]) == (48, 16)
    # even a random encoder's pooled features separate colour-coded classes better than chance (25 %)
    assert 25.0 < result["knn_top1"] <= 100.0 and 25.0 < result["linear_probe_top1"] <= 100.0


def test_a_finetuned_checkpoint_can_be_the_starting_point(official_dir, reference_meta):
    """Retraining starts from a classifier: encoder and fc_norm carry over, the head is new (other classes)."""
    path = official_dir / "official_finetuned.pth"
    init = read_init(path)
    config, state = init.config, init.state
    assert config.num_classes == reference_meta["num_classes"]
    model = micro_model(reference_meta, num_classes=3)
    load_encoder(model, state, path)
    assert torch.equal(model.fc_norm.weight, state["fc_norm.weight"])
    assert torch.equal(model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    assert model.head.weight.shape == (3, reference_meta["embed_dim"])


def test_a_retrain_continues_the_finetuned_model_head_included(tmp_path, synth_split, caplog):
    """--init of a fine-tuned checkpoint of the same classes (a retrain job's from_job): the model continues, head
    included, so its first steps start from a trained loss; --reset-head and other classes get a new head."""
    caplog.set_level(logging.INFO)
    recipe = TINY_MODEL + FAST + PLAIN + ["--image-size", "32", "--batch-size", "8", "--lr", "3e-3", "--drop-path", "0"]
    first = tmp_path / "first"
    assert finetune_main(recipe + ["--data-dir", str(synth_split), "--output-dir", str(first), "--epochs", "6"]) == 0
    init = str(first / BEST_CHECKPOINT)

    def retrain(name: str, data: Path, *extra: str) -> list[float]:
        caplog.clear()
        out = tmp_path / name
        assert finetune_main(recipe + ["--data-dir", str(data), "--output-dir", str(out), "--epochs", "1",
                                       "--init", init, *extra]) == 0
        return [record["loss"] for record in read_metrics(out)]

    fresh_start = read_metrics(first)[0]["loss"]
    continued = retrain("continued", synth_split)
    assert "continuing the fine-tuned model" in caplog.text and "newly initialised: nothing" in caplog.text
    assert continued[0] < 0.7 * fresh_start, (continued, fresh_start)

    reset = retrain("reset", synth_split, "--reset-head")
    assert "is not used (--reset-head): a new head for 4 classes" in caplog.text
    assert "newly initialised: head" in caplog.text and reset[0] > continued[0]

    renamed = tmp_path / "renamed"
    shutil.copytree(synth_split, renamed)
    for split in ("train", "val"):
        old = sorted((renamed / split).iterdir())[-1]
        old.rename(old.with_name("novel_class"))
    retrain("renamed", renamed)
    changed = [r for r in caplog.records if "the classes differ" in r.getMessage()]
    assert changed and changed[0].levelno == logging.WARNING
    assert f"new: novel_class; gone: {old.name}" in changed[0].getMessage()
    assert "newly initialised: head" in caplog.text


def test_choose_head_only_keeps_the_head_of_the_same_classes():
    head = torch.zeros(2, 4)
    tuned = InitCheckpoint(config=None, state={"head.weight": head}, class_names=("a", "b"))
    assert choose_head(tuned, ["a", "b"], False, "x.pth").keep
    assert not choose_head(tuned, ["a", "b"], True, "x.pth").keep
    assert choose_head(tuned, ["a", "c"], False, "x.pth").classes_changed
    assert not choose_head(tuned, ["b", "a"], False, "x.pth").keep  # another label order is another head
    pretrained = InitCheckpoint(config=None, state={"blocks.0.x": head}, class_names=None)
    assert "pretrained encoder" in choose_head(pretrained, ["a"], False, "p.pth").reason
    official = InitCheckpoint(config=None, state={"head.weight": head}, class_names=None)
    assert not choose_head(official, ["a", "b"], False, "o.pth").keep
