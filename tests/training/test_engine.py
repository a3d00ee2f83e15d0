"""The loop's guards: a non-finite loss stops training with a clear message; checkpoint cadence; the CLI entry."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lomar_serve.cli import main as lomar_main
from training.checkpointing import Position
from training.distributed import DistContext
from training.engine import LoopSettings, train_one_epoch
from training.errors import NonFiniteLossError
from training.metrics_log import MetricsLogger
from training.optim import CosineSchedule

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def batches(count: int):
    return [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))] * count


def run_loop(loss_fn, count: int, saves: list, tmp_path, save_every: int = 0):
    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    return train_one_epoch(
        model, loss_fn, batches(count), optimizer, torch.amp.GradScaler("cuda", enabled=False),
        CosineSchedule(1e-3, 0.0, 0.0, 1.0), Position(), LoopSettings(iterations=count, save_every_steps=save_every,
                                                                        progress=False),
        CPU, MetricsLogger(tmp_path, enabled=False), saves.append,
    )


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    def loss_fn(model, images, labels):
        return model(images).sum() * float("nan")

    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0, iteration 0: stopping. Lower"):
        run_loop(loss_fn, 3, [], tmp_path)


def test_mid_epoch_checkpoints_every_n_steps(tmp_path):
    saves: list[Position] = []
    stats = run_loop(lambda model, images, labels: model(images).pow(2).mean(), 5, saves, tmp_path, save_every=2)
    assert [(p.iteration, p.step) for p in saves] == [(2, 2), (4, 4)]
    assert stats["steps"] == 5


def test_lomar_data_synth_command(tmp_path, capsys):
    assert lomar_main(["data", "synth", "--out", str(tmp_path), "--classes", "2", "--per-class", "1",
                       "--val-per-class", "1", "--size", "16"]) == 0
    assert len(list((tmp_path / "train").rglob("*.png"))) == 2 and len(list((tmp_path / "val").rglob("*.png"))) == 2
