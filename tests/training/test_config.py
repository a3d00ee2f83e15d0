"""Config precedence (defaults < YAML < command line), validation, and the saved resolved config."""
from __future__ import annotations

import dataclasses
import logging
import os

import pytest
import torch
import yaml

from training.config import (MAX_DEFAULT_WORKERS, FinetuneConfig, PretrainConfig, available_cpus, field_help,
                             make_config, option_types, parse_config, resolved_amp, save_config)
from training.distributed import DistContext
from training.errors import ConfigError
from training.runner import make_schedule


def parse(cls, argv):
    return parse_config(cls, argv, "test", "test")


def test_defaults_then_yaml_then_cli(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("lr: 1e-3\nwarmup_epochs: 2\n" + yaml.safe_dump({"epochs": 7, "batch-size": 16, "blr": 0.01,
                                           "model_options": {"depth": 3, "embed_dim": 96}}))
    config = parse(PretrainConfig, ["--data-dir", "d", "--config", str(config_file), "--batch-size", "8",
                                    "--model-option", "depth=2", "--no-norm-pix-loss"])
    assert config.epochs == 7  # YAML over default 400
    assert config.batch_size == 8  # CLI over YAML
    assert config.blr == 0.01  # YAML
    assert config.min_crop_scale == 0.2  # default
    assert config.lr == 1e-3 and config.warmup_epochs == 2.0 and isinstance(config.warmup_epochs, float)
    assert config.warmup == 2.0
    assert config.model_options == {"depth": 2, "embed_dim": 96}  # CLI key over YAML key, others kept
    assert config.norm_pix_loss is False


def test_unknown_yaml_key_and_bad_values_are_refused(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown PretrainConfig setting.*epoch"):
        parse(PretrainConfig, ["--data-dir", "d", "--config", str(config_file)])
    config_file.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="setting epochs must be of type int, got 'many'"):
        parse(PretrainConfig, ["--data-dir", "d", "--config", str(config_file)])
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        parse(PretrainConfig, ["--data-dir", "d", "--batch-size", "0"])
    with pytest.raises(ConfigError, match="data_dir is required"):
        parse(PretrainConfig, [])
    with pytest.raises(ConfigError, match="--model, --init"):
        parse(FinetuneConfig, ["--data-dir", "d"])


def test_effective_lr_and_saved_config_round_trip(tmp_path):
    config = parse(FinetuneConfig, ["--data-dir", "d", "--init", "x.pth", "--batch-size", "32", "--accum-iter", "2"])
    assert config.effective_lr(world_size=4) == pytest.approx(5e-4 * 32 * 2 * 4 / 256)
    save_config(config, tmp_path / "config.yaml")
    again = parse(FinetuneConfig, ["--config", str(tmp_path / "config.yaml")])
    assert again == config


def test_decode_and_tf32_flags():
    config = parse(PretrainConfig, ["--data-dir", "d", "--decode", "gpu", "--no-tf32"])
    assert config.decode == "gpu" and config.tf32 is False
    assert parse(PretrainConfig, ["--data-dir", "d"]).decode == "cpu"
    with pytest.raises(ConfigError, match="decode must be one of"):
        make_config(PretrainConfig, {"data_dir": "d", "decode": "nvjpeg"})


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_every_flag_has_a_help_text_from_field_metadata(cls, capsys):
    with pytest.raises(SystemExit):
        parse(cls, ["--help"])
    text = capsys.readouterr().out
    for spec in dataclasses.fields(cls):
        assert field_help(cls, spec.name), f"{cls.__name__}.{spec.name} has no help text"
    assert "per process (per GPU) (default 64)" in text  # TrainConfig's help, shown for the subclass
    assert "LoMaRConfig overrides, e.g. depth=2; repeatable" in text
    assert field_help(PretrainConfig, "epochs") == "epochs to train"  # an override inherits the base help


def test_option_types_are_the_scalar_settings_that_are_not_paths():
    types = option_types(FinetuneConfig)
    assert types["batch_size"] is int and types["blr"] is float and types["model_ema"] is bool
    assert types["auto_augment"] is str and "mask_ratio" not in types
    assert not {"data_dir", "output_dir", "resume", "init", "val_dir", "model_options"} & set(types)
    assert option_types(PretrainConfig)["mask_ratio"] is float and "layer_decay" not in option_types(PretrainConfig)


def test_warmup_is_a_fraction_of_the_run_unless_given(tmp_path, caplog):
    config = parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--epochs", "5"])
    assert config.warmup_epochs is None and config.warmup == pytest.approx(0.25)  # 5 % of the run
    assert parse(PretrainConfig, ["--data-dir", "d"]).warmup == pytest.approx(20.0)  # the paper's 20 of 400
    assert parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--epochs", "10",
                                  "--warmup-fraction", "0.2"]).warmup == pytest.approx(2.0)
    given = parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--epochs", "5", "--warmup-epochs", "5"])
    assert given.warmup == 5.0  # a value given is used as it is...
    caplog.set_level(logging.INFO)
    schedule = make_schedule(given, DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    assert schedule.warmup_epochs == 5.0
    assert "warm-up 5 epochs, as given (--warmup-epochs): 100% of the 5-epoch run" in caplog.text
    assert "the whole run is warm-up" in caplog.text  # ...and said to be all of the run
    save_config(config, tmp_path / "config.yaml")  # unset stays unset (YAML null)
    assert parse(FinetuneConfig, ["--config", str(tmp_path / "config.yaml")]) == config
    with pytest.raises(ConfigError, match="warmup_fraction must be in"):
        parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--warmup-fraction", "2"])
    assert option_types(FinetuneConfig)["warmup_epochs"] is float  # a job may set it


def test_defaults_are_sized_to_the_machine():
    config = parse(FinetuneConfig, ["--data-dir", "d", "--model", "m"])
    assert 1 <= config.num_workers <= min(MAX_DEFAULT_WORKERS, available_cpus())
    assert available_cpus() == len(os.sched_getaffinity(0))
    assert config.amp == "auto"
    assert config.for_device("cpu").amp == "none"  # fp32 off CUDA: what is saved and logged
    assert config.for_device("cuda").amp == "bf16"
    assert parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--amp", "fp16"]).for_device("cpu").amp == "none"
    assert resolved_amp("fp16", "cuda") == "fp16"
    # metric records: about 10 an epoch (every step of a 10-step epoch), at most every 20 steps, or as given
    assert [config.logging_interval(steps) for steps in (3, 10, 100, 5000)] == [1, 1, 10, 20]
    assert parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--log-every", "7"]).logging_interval(5000) == 7
    with pytest.raises(ConfigError, match="log_every must be >= 0"):
        parse(FinetuneConfig, ["--data-dir", "d", "--model", "m", "--log-every", "-1"])
