"""Read-only views of the Triton model repository that jobs and deploys need: versions, model cards, configs.

Names and versions are validated before they touch the file system. The config is parsed with Triton's own
protobuf schema (shipped by tritonclient) and returned in the JSON form Triton's model-control API takes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from contracts.model_card import ModelCard, ModelCardError
from contracts.model_repository import CONFIG_FILE, is_model_name, versions
from lomar_serve.jobs.errors import VersionNotFound
from lomar_serve.jobs.paths import check_model_name, check_version

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepositoryView:
    root: Path

    def model_dir(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def models(self) -> list[str]:
        """Names of the models in the repository (folders with a config.pbtxt), sorted; [] when unreadable."""
        try:
            entries = list(self.root.iterdir())
        except OSError as error:
            LOGGER.warning("model repository %s unreadable: %s", self.root, error)
            return []
        return sorted(e.name for e in entries if is_model_name(e.name) and (e / CONFIG_FILE).is_file())

    def versions(self, name: str) -> list[str]:
        """Version directories of `name`, ascending ([] when the model does not exist)."""
        return [str(v) for v in versions(self.model_dir(name))]

    def version_dir(self, name: str, version: str) -> Path:
        """The version's directory; VersionNotFound when it does not exist."""
        path = self.model_dir(name) / check_version(version)
        if not path.is_dir():
            raise VersionNotFound(f"model {name!r} has no version {version} in the model repository")
        return path

    def card(self, name: str, version: str) -> ModelCard | None:
        """The version's model card; None when it has none or it is unreadable (logged)."""
        try:
            return ModelCard.read(self.version_dir(name, version))
        except ModelCardError as error:
            LOGGER.warning("%s", error)
            return None

    def config(self, name: str) -> dict[str, Any] | None:
        """config.pbtxt as Triton's JSON model configuration; None when the model has none yet."""
        path = self.model_dir(name) / CONFIG_FILE
        if not path.is_file():
            return None
        proto = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        return json_format.MessageToDict(proto, preserving_proto_field_name=True)

    def image_size(self, name: str) -> int | None:
        """H (= W) of the model's `image` input, per its config; None without a config."""
        config = self.config(name)
        if config is None:
            return None
        image = next((t for t in config.get("input", []) if t.get("name") == "image"), None)
        return int(image["dims"][-1]) if image else None

    def num_classes(self, name: str) -> int | None:
        """Width of the `logits` output, per the config; None for a model without one."""
        config = self.config(name)
        logits = next((t for t in (config or {}).get("output", []) if t.get("name") == "logits"), None)
        return int(logits["dims"][-1]) if logits else None
