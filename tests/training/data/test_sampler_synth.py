"""The resumable sampler and the synthetic data writer."""
from __future__ import annotations

from PIL import Image

from training.data import ResumableSampler, write_synthetic
from training.data.cli import main as data_main


def test_sampler_order_is_a_function_of_seed_and_epoch_and_can_start_late():
    data = list(range(20))
    sampler = ResumableSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5, drop_last=True)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_start(4)
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4
    sampler.set_epoch(4)
    sampler.set_start(0)
    assert list(sampler) != full
    other = ResumableSampler(data, num_replicas=2, rank=0, shuffle=True, seed=5, drop_last=True)
    other.set_epoch(3)
    assert not set(other) & set(full)  # ranks share no sample


def test_synth_writes_real_distinct_images(tmp_path, capsys):
    assert data_main(["synth", "--out", str(tmp_path), "--classes", "3", "--per-class", "2", "--size", "40",
                      "--format", "jpg"]) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    folders = sorted(p for p in tmp_path.iterdir())
    assert len(folders) == 3
    means = []
    for folder in folders:
        files = sorted(folder.glob("*.jpg"))
        assert len(files) == 2
        with Image.open(files[0]) as image:
            assert image.format == "JPEG" and image.size == (40, 40)
            means.append(tuple(round(v) for v in image.resize((1, 1)).getpixel((0, 0))))
    assert len(set(means)) == 3  # different colours per class
    names = write_synthetic(tmp_path / "s", classes=2, per_class=1, size=16)
    assert names == sorted(names)
