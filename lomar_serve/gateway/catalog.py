"""What the gateway knows about each model: its kind, input size, patch grid, labels and model card.

Discovered from Triton (model configuration, repository index) and, where the repository is on this machine, from
its files (labels.txt, model_card.json). Without local files the labels come from Triton's classification
extension. Entries are cached for a short time so a redeployed version is picked up without a restart.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from contracts.model_card import ModelCard, ModelCardError
from contracts.model_repository import LABELS_FILE, is_version
from contracts.triton_config import ConfigError, config_from_json, runs_on
from lomar_serve.gateway.errors import ModelNotFound, TritonUnavailable, WrongModelKind
from lomar_serve.gateway.inference import InferenceBackend

LOGGER = logging.getLogger(__name__)
ModelKind = Literal["classifier", "reconstructor"]


@dataclass(frozen=True)
class ModelSpec:
    """One servable model, as the gateway uses it (the model I/O contract: docs/architecture.md)."""

    name: str
    kind: ModelKind
    version: str  # the newest ready version ("" when Triton does not say)
    image_size: tuple[int, int]  # (H, W) of the `image` input
    max_batch_size: int  # 0 = the model takes no batch dimension (not supported by the gateway)
    labels: tuple[str, ...] = ()  # classifier: one per logit
    embedding_dim: int = 0  # classifier: D of `embedding`
    grid: tuple[int, int] = (0, 0)  # reconstructor: (h, w) of the `mask` input
    runs_on: tuple[str, ...] = ()  # what its loaded versions run on (contracts/triton_config.py runs_on)

    @property
    def patch_size(self) -> int:
        return self.image_size[0] // self.grid[0] if self.grid[0] else 0


def spec_from_config(config: dict[str, Any], version: str, labels: tuple[str, ...] = ()) -> ModelSpec:
    """Read a Triton model configuration (JSON form) against the I/O contract.

    Raises:
        WrongModelKind: the inputs/outputs are not those of a LoMaR classifier or reconstruction model.
    """
    name = str(config.get("name", ""))
    inputs = {tensor["name"]: tensor for tensor in config.get("input", [])}
    outputs = {tensor["name"]: tensor for tensor in config.get("output", [])}
    image = inputs.get("image")
    if image is None or image.get("data_type") != "TYPE_UINT8" or len(image.get("dims", [])) != 3:
        raise WrongModelKind(f"model {name!r} has no UINT8 [3, H, W] input named 'image'")
    channels, height, width = (int(d) for d in image["dims"])
    if channels != 3 or height <= 0 or width <= 0:
        raise WrongModelKind(f"model {name!r} input 'image' must be [3, H, W] with fixed H, W; got {image['dims']}")
    batch = int(config.get("max_batch_size", 0))
    if batch < 1:
        raise WrongModelKind(f"model {name!r} has max_batch_size 0; the gateway needs a batch dimension")
    try:
        devices = runs_on(config_from_json(config))
    except ConfigError as error:
        LOGGER.warning("model %s: %s", name, error)
        devices = ()
    if "logits" in outputs and "embedding" in outputs:
        return ModelSpec(name=name, kind="classifier", version=version, image_size=(height, width),
                         max_batch_size=batch, labels=labels,
                         embedding_dim=int(outputs["embedding"]["dims"][-1]), runs_on=devices)
    if "mask" in inputs and "reconstruction" in outputs:
        grid = tuple(int(d) for d in inputs["mask"]["dims"])
        if len(grid) != 2 or height % grid[0] or width % grid[1] or height // grid[0] != width // grid[1]:
            raise WrongModelKind(f"model {name!r}: mask {grid} does not tile the image {height}x{width}")
        return ModelSpec(name=name, kind="reconstructor", version=version, image_size=(height, width),
                         max_batch_size=batch, grid=(grid[0], grid[1]), runs_on=devices)
    raise WrongModelKind(f"model {name!r} is neither a classifier (outputs logits, embedding) nor a "
                         "reconstruction model (input mask, output reconstruction)")


class ModelCatalog:
    """Model specs by name, discovered lazily and cached for `ttl_s` seconds."""

    def __init__(self, backend: InferenceBackend, repository: Path | None, *, ttl_s: float = 30.0,
                 retry_after_s: int = 2, version_for: Callable[[str], str | None] = lambda name: None) -> None:
        """
        Args:
            repository: the model repository when it is on this machine (labels, model cards), else None.
            ttl_s: how long a discovered spec is reused.
            version_for: model name -> the version requests are routed to (None: the newest ready one).
        """
        self._backend = backend
        self._version_for = version_for
        self._repository = repository
        self._ttl_s = ttl_s
        self._retry_after_s = retry_after_s
        self._cache: dict[str, tuple[float, ModelSpec]] = {}
        self._lock = asyncio.Lock()

    def invalidate(self, name: str | None = None) -> None:
        """Forget one model (or all): the next request rediscovers it (e.g. after a deploy)."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    def known(self, name: str) -> bool:
        """Whether `name` has been resolved to a served model (recently)."""
        return name in self._cache

    async def get(self, name: str, kind: ModelKind | None = None) -> ModelSpec:
        """The spec of a ready model of the wanted kind (None: any kind).

        Raises:
            ModelNotFound, WrongModelKind, TritonUnavailable (model still loading, Triton down).
        """
        cached = self._cache.get(name)
        if self._stale(name, cached):
            async with self._lock:
                cached = self._cache.get(name)
                if self._stale(name, cached):
                    cached = (time.monotonic(), await self._discover(name))
                    self._cache[name] = cached
        spec = cached[1]
        if kind is not None and spec.kind != kind:
            verb = "classify or embed" if kind == "classifier" else "reconstruct"
            raise WrongModelKind(f"model {name!r} is a {spec.kind} model; it cannot {verb}")
        return spec

    def _stale(self, name: str, cached: tuple[float, ModelSpec] | None) -> bool:
        """Not cached, too old, or cached for another version than the one requests are routed to now."""
        if cached is None or time.monotonic() - cached[0] > self._ttl_s:
            return True
        routed = self._version_for(name)
        return routed is not None and routed != cached[1].version

    async def describe_all(self) -> list[dict[str, Any]]:
        """Every model in the repository with versions, states, kind, sizes and model cards (GET /v1/models)."""
        versions: dict[str, list[dict[str, Any]]] = {}
        for entry in await self._backend.repository_index():
            version = str(entry.get("version", ""))
            versions.setdefault(entry["name"], []).append({
                "version": version, "state": entry.get("state", "UNKNOWN"), "reason": entry.get("reason", ""),
                "model_card": _card_dict(self.model_card(entry["name"], version)),
            })
        models = []
        for name, entries in sorted(versions.items()):
            ready = [e["version"] for e in entries if e["state"] == "READY" and e["version"]]
            serving = self._version_for(name) or max(ready, key=int, default=None)
            info: dict[str, Any] = {"name": name, "serving_version": serving,
                                    "versions": sorted(entries, key=lambda e: int(e["version"] or 0))}
            if ready:
                try:
                    spec = await self.get(name)
                except (WrongModelKind, ModelNotFound, TritonUnavailable) as error:
                    info["error"] = error.message
                else:
                    info.update(_public(spec))
                    for entry in entries:  # one config for every version of a model
                        if entry["state"] == "READY" and spec.runs_on:
                            entry["runs_on"] = list(spec.runs_on)
            models.append(info)
        return models

    def model_card(self, name: str, version: str) -> ModelCard | None:
        """The version's model card from the local repository; None without one (or unreadable: logged)."""
        if self._repository is None or not is_version(version):
            return None
        version_dir = self._repository / name / version
        if not version_dir.is_dir():
            return None
        try:
            return ModelCard.read(version_dir)
        except ModelCardError as error:
            LOGGER.warning("%s", error)
            return None

    async def _discover(self, name: str) -> ModelSpec:
        config = await self._backend.model_config(name)
        versions = [entry for entry in await self._backend.repository_index() if entry.get("name") == name]
        if not versions:
            raise ModelNotFound(f"unknown model {name!r}")
        ready = [str(entry.get("version", "")) for entry in versions if entry.get("state") == "READY"]
        if not ready:
            states = ", ".join(sorted({str(entry.get("state")) for entry in versions}))
            raise TritonUnavailable(f"model {name!r} is not ready ({states}); retry shortly",
                                    retry_after_s=self._retry_after_s)
        routed = self._version_for(name)
        if routed is not None and routed not in ready:
            raise TritonUnavailable(f"model {name!r} version {routed} is not loaded right now (Triton restarting or loading it); "
                                    "retry shortly", retry_after_s=self._retry_after_s)
        version = routed or max(ready, key=lambda v: int(v) if is_version(v) else -1)
        spec = spec_from_config(config, version)
        if spec.kind == "classifier":
            num_classes = int(next(t for t in config["output"] if t["name"] == "logits")["dims"][-1])
            labels = self._local_labels(name, version, config) or await self._triton_labels(spec, num_classes)
            spec = spec_from_config(config, version, _fit_labels(name, labels, num_classes))
        LOGGER.info("model %s: %s, version %s, input %s", name, spec.kind, spec.version, spec.image_size)
        return spec

    def _local_labels(self, name: str, version: str, config: dict[str, Any]) -> list[str]:
        """The version's model card classes, else its labels file, else the model's `label_filename`; [] when the
        repository is not local."""
        if self._repository is None:
            return []
        card = self.model_card(name, version)  # per version; the label file is per model
        if card is not None and card.classes:
            return list(card.classes)
        label_file = next((t.get("label_filename", "") for t in config["output"] if t["name"] == "logits"), "")
        candidates = [self._repository / name / version / LABELS_FILE]
        if label_file:
            candidates.append(self._repository / name / label_file)
        for path in candidates:
            if path.is_file():
                return path.read_text(encoding="utf-8").splitlines()
        return []

    async def _triton_labels(self, spec: ModelSpec, num_classes: int) -> list[str]:
        """Labels from Triton's classification extension ("score:index:label" strings) on a blank image."""
        blank = np.zeros((1, 3, *spec.image_size), dtype=np.uint8)
        result = await self._backend.infer(spec.name, {"image": blank}, ["logits"], version=spec.version,
                                           class_count={"logits": num_classes})
        labels = [""] * num_classes
        for entry in result.outputs["logits"].reshape(-1):
            parts = (entry.decode() if isinstance(entry, bytes) else str(entry)).split(":", 2)
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < num_classes:
                labels[int(parts[1])] = parts[2]
        return labels


def _card_dict(card: ModelCard | None) -> dict[str, Any] | None:
    return None if card is None else card.to_dict()


def _fit_labels(name: str, labels: list[str], num_classes: int) -> tuple[str, ...]:
    """Exactly one label per class: missing ones become the class index."""
    if labels and len(labels) != num_classes:
        LOGGER.warning("model %s has %d labels for %d classes", name, len(labels), num_classes)
    return tuple((labels[i] if i < len(labels) and labels[i] else str(i)) for i in range(num_classes))


def _public(spec: ModelSpec) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": spec.kind, "image_size": list(spec.image_size),
                            "max_batch_size": spec.max_batch_size}
    if spec.kind == "classifier":
        info.update(num_classes=len(spec.labels), labels=list(spec.labels), embedding_dim=spec.embedding_dim)
    else:
        info.update(patch_size=spec.patch_size, grid=list(spec.grid))
    return info
