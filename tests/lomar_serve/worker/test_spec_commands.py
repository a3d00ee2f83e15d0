"""Job requests become plans with confined paths and whitelisted options, then argument lists."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from contracts.checkpoints import CONFIG_FILE, LAST_CHECKPOINT
from lomar_serve.jobs.budget import MemoryBudget
from lomar_serve.jobs.errors import InvalidName, LifecycleError, OverMemoryBudget, PathNotAllowed
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.progress import job_progress, read_chunk, read_records, training_progress
from lomar_serve.jobs.spec import TRAINING_CONFIGS, TRAINING_OPTIONS, JobPlan, JobRequest
from lomar_serve.worker import scoring
from lomar_serve.worker.scoring import Score, not_worse
from lomar_serve.worker.stages import export_command, training_command, verification_command
from training.config import CHOICES, build_parser
from training.models.memory import GIB


@pytest.fixture()
def roots(tmp_path: Path) -> DataRoots:
    (tmp_path / "data" / "set" / "train" / "a").mkdir(parents=True)
    (tmp_path / "data" / "base.pth").write_bytes(b"x")
    return DataRoots.of([tmp_path / "data"])


def test_plan_resolves_and_builds_commands(roots: DataRoots, tmp_path: Path) -> None:
    request = JobRequest(data_dir="set", init="base.pth", epochs=3, model_options={"depth": 2},
                         options={"batch_size": 8, "auto_augment": "", "blr": 1e-3, "seed": 1})
    plan = request.plan(roots, tmp_path / "jobs")
    assert plan.model_name == "lomar_classifier" and plan.task == "classify"
    assert plan.train_dir == roots.roots[0] / "set" / "train"
    assert JobPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    paths = JobFiles(tmp_path / "jobs" / "j1")
    command = training_command(plan, paths, "py")
    assert command[:4] == ["py", "-m", "lomar_serve.cli", "finetune"]
    assert f"--init={roots.roots[0] / 'base.pth'}" in command
    assert "--model-option=depth=2" in command and "--batch-size=8" in command and "--auto-augment=" in command
    assert f"--output-dir={paths.train}" in command and "--epochs=3" in command
    export = export_command(plan, paths, tmp_path / "repo", 112, "py")
    assert "--task=classify" in export and "--image-size=112" in export and "--name=lomar_classifier" in export
    assert f"--checkpoint={paths.train / LAST_CHECKPOINT}" in export
    verify = verification_command(plan, paths, tmp_path / "repo", "4", "3", "py")
    assert "--version=4" in verify and "--baseline=3" in verify
    assert f"--report-dir={paths.evaluation_dir}" in verify and paths.evaluation.parent == paths.evaluation_dir
    # both stages that list images get the roots the plan was confined to
    assert plan.data_roots == (str(roots.roots[0]),)
    assert f"--data-roots={roots.roots[0]}" in command and f"--data-roots={roots.roots[0]}" in verify
    parsed = vars(build_parser(TRAINING_CONFIGS["finetune"], "test", "test").parse_args(command[4:]))
    assert parsed["data_roots"] == str(roots.roots[0])


def test_scoring_refuses_evaluation_images_outside_the_roots(roots: DataRoots, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The verification stage lists images before loading any model: a symlink leading out stops it there."""
    (tmp_path / "secret.png").write_bytes(b"x")
    (roots.roots[0] / "set" / "train" / "a" / "leak.png").symlink_to(tmp_path / "secret.png")
    arguments = ["--repository", str(tmp_path / "repo"), "--name", "m", "--version", "1", "--out",
                 str(tmp_path / "out.json"), "--data-dir", str(roots.roots[0] / "set" / "train")]
    assert scoring.main([*arguments, f"--data-roots={roots.roots[0]}"]) == 2
    assert "image a/leak.png under" in capsys.readouterr().err and not (tmp_path / "out.json").exists()
    assert len(scoring.list_samples(roots.roots[0] / "set" / "train", 10)) == 1  # no roots: followed


@pytest.mark.parametrize("changes, error", [
    ({"data_dir": "../../etc"}, PathNotAllowed),
    ({"data_dir": "/etc"}, PathNotAllowed),
    ({"init": "/etc/passwd"}, PathNotAllowed),
    ({"model_name": "../x"}, InvalidName),
    ({"model": "Bad Name"}, InvalidName),
    ({"options": {"output_dir": "/tmp/x"}}, LifecycleError),
    ({"options": {"batch_size": "--output-dir=/x"}}, LifecycleError),
    ({"options": {"device": "--output-dir=/x"}}, LifecycleError),
    ({"options": {"batch_size": 1.5}}, LifecycleError),
    ({"options": {"model_ema": 1}}, LifecycleError),  # a bool setting takes a JSON boolean
    ({"options": {"batch_size": True}}, LifecycleError),
    ({"options": {"mask_ratio": 0.5}}, LifecycleError),  # a pretraining setting in a finetune job
    ({"options": {"epochs": 3}}, LifecycleError),  # the job sets it (the request's own `epochs`)
    ({"options": {"resume": "x.pth"}}, LifecycleError),  # paths are never options
    ({"init": None}, LifecycleError),  # no starting point
    ({"from_job": "abc", "init": None}, PathNotAllowed),  # no such job
    ({"from_job": "abc"}, LifecycleError),  # both init and from_job
    ({"kind": "pretrain"}, LifecycleError),  # `lomar pretrain` has no --init
])
def test_bad_requests_are_refused(roots: DataRoots, tmp_path: Path, changes: dict, error: type) -> None:
    values = {"data_dir": "set", "init": "base.pth", **changes}
    with pytest.raises(error):
        JobRequest(**values).plan(roots, tmp_path / "jobs")


@pytest.mark.parametrize("kind", ["finetune", "pretrain"])
def test_every_allowed_option_reaches_the_training_program(roots: DataRoots, tmp_path: Path, kind: str) -> None:
    """Each allowed option becomes a flag that the training program parses back to the same value."""
    samples = {bool: False, int: 3, float: 0.5, str: "x"}
    options = {name: CHOICES[name][-1] if name in CHOICES else samples[type_]
               for name, type_ in TRAINING_OPTIONS[kind].items()}
    options["num_workers"] = 1  # at most this machine's CPU count
    options["image_size"] = 112  # a multiple of the architecture's patch size
    assert {"batch_size", "blr", "seed", "device"} <= set(options)
    plan = JobRequest(kind=kind, data_dir="set", model="lomar_tiny_patch16", options=options).plan(roots,
                                                                                                  tmp_path / "jobs")
    command = training_command(plan, JobFiles(tmp_path / "jobs" / "j1"), "py")
    parsed = vars(build_parser(TRAINING_CONFIGS[kind], "test", "test").parse_args(command[4:]))
    assert {name: parsed[name] for name in options} == options


def test_unknown_fields_and_bad_job_ids_fail_validation() -> None:
    with pytest.raises(ValidationError):
        JobRequest(data_dir="set", output_dir="/tmp")
    with pytest.raises(ValidationError):
        JobRequest(data_dir="set", from_job="../x")


def test_progress_from_metrics_log(tmp_path: Path) -> None:
    lines = [{"split": "train", "step": 1, "epoch": 0, "loss": 2.0, "lr": 0.1},
             {"split": "epoch", "step": 1, "epoch": 0}, {"split": "val", "step": 1, "top1": 40.0, "top5": 90.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"split\": \"tra")
    fraction, figures = training_progress(read_records(tmp_path), epochs=4)
    assert fraction == 0.25
    assert figures["train_loss"] == 2.0 and figures["val_top1"] == 40.0 and figures["epochs_done"] == 1
    assert figures["eta_s"] is None  # no run record: no pace to go by
    assert job_progress("train", fraction) == pytest.approx(0.2) and job_progress("export") == 0.8
    assert read_records(tmp_path / "missing") == []
    records, end = read_chunk(tmp_path, 0)
    assert len(records) == 3 and end == len("\n".join(json.dumps(x) for x in lines)) + 1  # not the line being written
    assert read_chunk(tmp_path, end) == ([], end)
    assert read_chunk(tmp_path, 0, max_bytes=end - 1)[0] == records[:2]  # only complete lines


def test_progress_by_steps_and_the_eta_of_training() -> None:
    run = {"split": "run", "step": 20, "epoch": 2, "time": 1000.0, "epochs": 10, "steps_per_epoch": 10,
           "total_steps": 100}
    latest = {"split": "train", "step": 40, "epoch": 3, "time": 1010.0, "loss": 1.0, "lr": 0.01, "img_per_s": 64.0}
    records = [{"split": "epoch", "step": 20, "epoch": 1}, run, latest]  # a run resumed at step 20
    fraction, figures = training_progress(records, epochs=10, now=1012.0)
    assert fraction == pytest.approx(0.4)  # step 40 of 100, finer than epochs (2 of 10)
    # 20 steps in 10 s since the run began: 60 more take 30 s, 2 of which have gone since the latest record
    assert figures["eta_s"] == pytest.approx(28.0) and figures["img_per_s"] == 64.0 and figures["total_steps"] == 100
    assert training_progress(records, epochs=10, now=2000.0)[1]["eta_s"] == 0.0
    assert training_progress([run], epochs=10, now=1000.0)[1]["eta_s"] is None


def test_auto_deploy_gate() -> None:
    new = Score("2", "top1", 80.0, 10)
    assert not_worse(new, None) and not_worse(new, Score("1", "top1", 80.0, 10))
    assert not not_worse(new, Score("1", "top1", 80.1, 10))
    error = Score("2", "masked_mse", 0.05, 10)
    assert not_worse(error, Score("1", "masked_mse", 0.06, 10))
    assert not not_worse(error, Score("1", "masked_mse", 0.04, 10))


def test_a_job_from_a_checkpoint_is_sized_by_the_run_that_wrote_it(roots: DataRoots, tmp_path: Path) -> None:
    """No `model` in the request: the architecture is that of the config.yaml beside the init checkpoint (an
    earlier job's output); a checkpoint without one is not sized (its file fixes the architecture)."""
    run = roots.roots[0] / "run"
    run.mkdir()
    (run / "checkpoint-best.pth").write_bytes(b"x")
    (run / CONFIG_FILE).write_text(yaml.safe_dump({"model": "lomar_base_patch16", "model_options": {"depth": 6}}))
    budget = MemoryBudget(2 * GIB, "test")
    request = JobRequest(data_dir="set", init="run/checkpoint-best.pth", options={"batch_size": 8})
    request.plan(roots, tmp_path / "jobs", budget)
    larger = request.model_copy(update={"options": {"batch_size": 512}})
    with pytest.raises(OverMemoryBudget, match="depth 6, embed_dim 768"):
        larger.plan(roots, tmp_path / "jobs", budget)
    (run / CONFIG_FILE).unlink()
    larger.plan(roots, tmp_path / "jobs", budget)
