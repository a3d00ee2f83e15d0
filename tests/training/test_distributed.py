"""DDP on CPU: torchrun with two gloo processes trains, and both processes end with identical weights."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
import torch

from tests.training.conftest import REPO, TINY_PRETRAIN, child_env
from training.models import create_model, read_checkpoint

pytestmark = pytest.mark.e2e  # starts torchrun and two training processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_processes_gloo(tmp_path, synth_dir):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", "-m", "training.pretrain", *TINY_PRETRAIN, "--data-dir", str(synth_dir),
        "--output-dir", str(out), "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "3", "--lr", "1e-3",
        "--warmup-epochs", "0",
    ]
    result = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process group gloo: rank 0 of 2" in result.stderr
    match = re.search(r"all 2 processes hold identical weights \(fingerprint \[([^\]]+)\]\)", result.stderr)
    assert match, result.stderr[-3000:]
    saved = read_checkpoint(out / "checkpoint-last.pth")
    assert saved["step"] == 3
    assert saved["config"]["batch_size"] == 4
    torch.manual_seed(0)  # the programs' initial weights: they must have moved
    initial = create_model("lomar_tiny_patch16", pretrain=True, depth=1, embed_dim=64, num_heads=2, num_windows=2,
                           img_size=128).state_dict()
    assert not torch.equal(initial["blocks.0.attn.qkv.weight"], saved["model"]["blocks.0.attn.qkv.weight"])
