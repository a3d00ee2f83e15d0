"""The command lines of a job's stages: training, export, verification (argument lists, never a shell).

Every stage runs `python -m lomar_serve.cli NAME ...` (or the verification module) with the worker's own
interpreter, so training and export run in the same environment without being imported by the worker.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.spec import JobPlan


def _flag(name: str, value: object) -> str:
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.replace('_', '-')}"
    return f"--{name.replace('_', '-')}={value}"


def _data_roots(plan: JobPlan) -> list[str]:
    """--data-roots for a stage that lists images: each must resolve inside the roots the plan was checked
    against (a symlink inside a root may not lead out of it)."""
    return [f"--data-roots={os.pathsep.join(plan.data_roots)}"] if plan.data_roots else []


def training_command(plan: JobPlan, paths: JobFiles, python: str = sys.executable) -> list[str]:
    """`lomar finetune|pretrain` for the plan; resumes from the output folder's last checkpoint when it exists."""
    command = [python, "-m", "lomar_serve.cli", plan.kind, f"--data-dir={plan.data_dir}",
               f"--output-dir={paths.train}", f"--epochs={plan.epochs}", "--no-progress", "--auto-resume",
               *_data_roots(plan)]
    if plan.val_dir and plan.kind == "finetune":
        command.append(f"--val-dir={plan.val_dir}")
    if plan.init:
        command.append(f"--init={plan.init}")
    if plan.model:
        command.append(f"--model={plan.model}")
    command += [f"--model-option={key}={value}" for key, value in plan.model_options.items()]
    command += [_flag(key, value) for key, value in plan.options.items()]
    return command


def export_command(plan: JobPlan, paths: JobFiles, repository: Path, image_size: int | None,
                   python: str = sys.executable) -> list[str]:
    """`lomar export` of the job's checkpoint as a new version of `plan.model_name`."""
    command = [python, "-m", "lomar_serve.cli", "export", f"--checkpoint={paths.checkpoint}",
               f"--task={plan.task}", f"--out={repository}", f"--name={plan.model_name}"]
    if image_size:
        command.append(f"--image-size={image_size}")
    return command


def verification_command(plan: JobPlan, paths: JobFiles, repository: Path, version: str, baseline: str | None,
                         python: str = sys.executable) -> list[str]:
    """Score the exported version (and the serving one, for comparison) on the job's evaluation images, and write
    the evaluation report of both."""
    command = [python, "-m", "lomar_serve.worker.scoring", f"--repository={repository}",
               f"--name={plan.model_name}", f"--version={version}", f"--data-dir={plan.eval_dir}",
               f"--out={paths.verification}", f"--report-dir={paths.evaluation_dir}", *_data_roots(plan)]
    if baseline:
        command.append(f"--baseline={baseline}")
    return command
