"""What a form for a retrain job request shows (the control plane's console, `GET /v1/admin/job-form`): the
training settings a request may set, with their types, defaults, choices and help texts, read from the training
configs as the training programs' flags are; the architectures; the data sets under the data roots.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from lomar_serve.jobs.paths import DataRoots
from contracts.model_repository import DEFAULT_MODEL_NAMES
from lomar_serve.jobs.spec import EXPORT_TASKS, TRAINING_CONFIGS, TRAINING_OPTIONS
from training.config import CHOICES, field_help  # no torch
from training.models.architectures import ARCHITECTURES  # no torch

# The settings a form shows by default; the others are one "more options" field away.
COMMON_OPTIONS = ("image_size", "batch_size", "blr", "warmup_epochs", "device", "num_workers", "seed")


def option_fields(kind: str) -> list[dict[str, Any]]:
    """Each training setting a `kind` job request may set: name, type, default, choices, help, common."""
    config = TRAINING_CONFIGS[kind]
    specs = {spec.name: spec for spec in dataclasses.fields(config)}
    described = []
    for name, type_ in TRAINING_OPTIONS[kind].items():
        spec = specs[name]
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        described.append({"name": name, "type": type_.__name__, "default": default, "help": field_help(config, name),
                          "choices": list(CHOICES.get(name, ())), "common": name in COMMON_OPTIONS})
    return described


def job_form(roots: DataRoots) -> dict[str, Any]:
    """Everything a job form offers (the JobForm response)."""
    return {"data_roots": [str(root) for root in roots.roots],
            "datasets": [dataclasses.asdict(dataset) for dataset in roots.datasets()],
            "architectures": list(ARCHITECTURES),  # smallest first
            "model_names": {kind: DEFAULT_MODEL_NAMES[task] for kind, task in EXPORT_TASKS.items()},
            "options": {kind: option_fields(kind) for kind in TRAINING_CONFIGS}}
