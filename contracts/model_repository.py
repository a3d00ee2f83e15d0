"""The Triton model repository as this project writes it (export) and reads it (catalog, lifecycle).

Layout (standard Triton):
    REPO/NAME/config.pbtxt
    REPO/NAME/labels.txt            (classifiers: the label file of the `logits` output)
    REPO/NAME/VERSION/model.onnx, model_card.json, and the backend's file (model.py or model.plan)

Model names: 1-64 characters, letters, digits, '_', '.' and '-', starting with a letter or a digit. Dots are
allowed because Triton accepts them and they read well in versioned names (`resnet.v2`); a first letter or
digit keeps out hidden folders and the path components `.` and `..`. Export, the gateway's `model` query
parameter, the gateway's default-model settings, the admin API and the lifecycle all check this one rule, so a
model that can be exported can be served and deployed.

Versions: a folder named by a positive integer without leading zeros, at most MAX_VERSION (Triton ignores other
folders); the admin API and the lifecycle accept the same numbers.
"""
from __future__ import annotations

import re
from pathlib import Path

MODEL_NAME_MAX_LENGTH = 64
MODEL_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MODEL_NAME_MAX_LENGTH - 1}}}$"
MODEL_NAME_RULE = f"1-{MODEL_NAME_MAX_LENGTH} letters, digits, '_', '.' or '-', starting with a letter or a digit"
VERSION_DIGITS = 9  # Triton's version numbers are int64; nine digits are plenty
MAX_VERSION = 10 ** VERSION_DIGITS - 1
VERSION_PATTERN = rf"^[1-9][0-9]{{0,{VERSION_DIGITS - 1}}}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)

TASKS = ("classify", "reconstruct")  # what an exported model does
DEFAULT_CLASSIFIER = "lomar_classifier"
DEFAULT_RECONSTRUCTOR = "lomar_reconstruction"
DEFAULT_MODEL_NAMES = {"classify": DEFAULT_CLASSIFIER, "reconstruct": DEFAULT_RECONSTRUCTOR}

CONFIG_FILE = "config.pbtxt"  # per model
LABELS_FILE = "labels.txt"  # per model: one class name per line, the `label_filename` of `logits`
ONNX_FILE = "model.onnx"  # per version
TENSORRT_FILE = "model.plan"  # per version, TensorRT backend
PYTHON_FILE = "model.py"  # per version, Python backend: runs model.onnx with ONNX Runtime
CARD_FILE = "model_card.json"  # per version: contracts.model_card.ModelCard
HOLDS_DIR = ".holds"  # per model: REPO/NAME/.holds/VERSION/HOLDER, a version still in use (lomar_serve/common/holds.py)
ROLLOUT_FILE = ".rollout.json"  # per model: the canary or shadow rollout gateways follow (common/rollouts.py)
ROLLOUT_REPORTS_DIR = ".rollout"  # per model: REPO/NAME/.rollout/GATEWAY.json, each gateway's guard figures
API_KEYS_FILE = ".api_keys.json"  # top level: the gateways' API keys, from the control plane (common/api_keys.py)
MODEL_FILES = {"python": PYTHON_FILE, "onnxruntime": ONNX_FILE, "tensorrt": TENSORRT_FILE}  # Triton backend -> file


def is_model_name(name: object) -> bool:
    """Whether `name` follows the model-name rule (MODEL_NAME_RULE)."""
    return isinstance(name, str) and _MODEL_NAME.fullmatch(name) is not None


def is_version(version: object) -> bool:
    """Whether `version` (an int, or a folder name / request text) is a valid version number."""
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        return False
    return _VERSION.fullmatch(str(version)) is not None


def versions(model_dir: Path) -> list[int]:
    """Version numbers present in a model directory, ascending ([] when it does not exist)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(path.name) for path in model_dir.iterdir() if path.is_dir() and is_version(path.name))
