"""Training output file names and the checkpoint a finished run hands on."""
from __future__ import annotations

import hashlib
from pathlib import Path

from contracts.checkpoints import BEST_CHECKPOINT, LAST_CHECKPOINT, file_sha256, final_checkpoint, periodic_checkpoint


def test_final_checkpoint_prefers_best(tmp_path: Path) -> None:
    assert final_checkpoint(tmp_path) is None
    (tmp_path / LAST_CHECKPOINT).write_bytes(b"last")
    assert final_checkpoint(tmp_path) == tmp_path / LAST_CHECKPOINT
    (tmp_path / BEST_CHECKPOINT).write_bytes(b"best")
    assert final_checkpoint(tmp_path) == tmp_path / BEST_CHECKPOINT


def test_periodic_names_sort_by_epoch_and_sha256(tmp_path: Path) -> None:
    names = [periodic_checkpoint(epoch) for epoch in (100, 20, 3)]
    assert sorted(names) == [periodic_checkpoint(3), periodic_checkpoint(20), periodic_checkpoint(100)]
    data = bytes(range(256)) * 9000  # several read blocks
    (tmp_path / "x.pth").write_bytes(data)
    assert file_sha256(tmp_path / "x.pth") == hashlib.sha256(data).hexdigest()
