"""Deploy and roll back model versions on every Triton of a fleet without dropping a request.

The serving version of a model is published in the shared model repository (contracts/triton_config.py: the
version policy of REPO/NAME/config.pbtxt); every Triton start loads it and every gateway routes to it. A switch
from the serving version S to a target T:
1. on every Triton: load T next to S (explicit model control, the config with `version_policy: {specific:
   {versions: [S, T]}}` as a load-time override), check T is READY, smoke-infer T with a generated input (every
   output present, of the configured shape, finite);
2. record the switch in the lifecycle store (deploy history, rollback stack), then publish T in config.pbtxt:
   this is the switch; gateways follow within their routing interval;
3. after a drain (gateways still sending to S finish: at least two gateway routing intervals) and while a gateway
   holds S for a re-index of its image collections (lomar_serve/common/holds.py, at most `hold_s`), reload the model on
   every Triton with config.pbtxt as it is now, naming T only: S is unloaded.
A failure in 1 anywhere reloads every touched Triton with config.pbtxt, which still names S: T is unloaded and S
serves everywhere, as before. A rollback is the same switch to the version deployed before. A Triton that
restarts at any point loads what config.pbtxt names, so a version that never passed step 1 is never loaded.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from contracts.model_card import ModelCard
from contracts.model_repository import is_version
from contracts.triton_config import publish_serving_version, read_serving_version
from lomar_serve.common.holds import active_holders
from lomar_serve.jobs.errors import DeployError, NothingToRollBack, VersionNotFound
from lomar_serve.jobs.paths import check_model_name, check_version
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.store import LifecycleStore

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploySettings:
    load_timeout_s: float = 300.0  # one Triton load (Python-backend stubs start a process per instance)
    drain_s: float = 2.0  # after the switch, the old version keeps serving this long before unloading
    hold_s: float = 600.0  # at most this long more while gateways hold the old version (collection re-index)


def _dims(tensor: dict[str, Any]) -> list[int]:
    return [int(d) for d in tensor["dims"]]


def _interface(card: ModelCard) -> dict[str, str]:
    """What versions of one model must agree on: {"task": ..., tensor name: "UINT8 [B,3,224,224]", ...}."""
    tensors = {**card.inputs, **card.outputs}
    return {"task": card.task, **{name: spec.describe() for name, spec in tensors.items()}}


class TritonNode:
    """The model-control operations a deploy needs on one Triton server."""

    def __init__(self, url: str, load_timeout_s: float) -> None:
        self.url = url  # "host:port" of its HTTP endpoint
        self._load_timeout_s = load_timeout_s

    def _client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.url, connection_timeout=10.0,
                                                 network_timeout=self._load_timeout_s)

    def ready_versions(self, name: str) -> list[str]:
        """Versions of `name` this Triton has loaded and ready, ascending."""
        try:
            index = self._client().get_model_repository_index()
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"Triton {self.url} is not reachable: {error}") from error
        ready = [str(e.get("version", "")) for e in index if e.get("name") == name and e.get("state") == "READY"]
        return sorted((v for v in ready if is_version(v)), key=int)

    def load(self, name: str, config: dict[str, Any]) -> None:
        """Load (or reload) `name` with `config` (Triton's JSON model configuration) as a load-time override."""
        try:
            self._client().load_model(name, config=json.dumps(config))
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"Triton {self.url} could not load {name}: {error}") from error

    def smoke(self, name: str, version: str, config: dict[str, Any]) -> None:
        """One inference on generated inputs: every configured output comes back, shaped as configured, finite."""
        rng = np.random.default_rng(0)
        inputs = []
        for tensor in config.get("input", []):
            dtype = triton_to_np_dtype(tensor["data_type"].removeprefix("TYPE_"))
            shape = [1, *_dims(tensor)]
            if dtype == np.bool_:
                array = rng.random(shape) < 0.75
            else:
                array = rng.integers(0, 256, shape).astype(dtype)
            item = triton_http.InferInput(tensor["name"], shape, tensor["data_type"].removeprefix("TYPE_"))
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        outputs = [triton_http.InferRequestedOutput(t["name"], binary_data=True) for t in config.get("output", [])]
        try:
            result = self._client().infer(name, inputs, model_version=version, outputs=outputs)
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"smoke inference on version {version} in Triton {self.url} failed: {error}") from error
        for tensor in config.get("output", []):
            array = result.as_numpy(tensor["name"])
            expected = (1, *_dims(tensor))
            if array is None or tuple(array.shape) != expected or not np.isfinite(array).all():
                shape = None if array is None else tuple(array.shape)
                raise DeployError(f"smoke inference on version {version} in Triton {self.url}: output "
                                  f"{tensor['name']} is {shape} (expected {expected}, finite)")


class Deployer:
    """Switches the serving version of models on every Triton of the fleet; one switch at a time."""

    def __init__(self, triton_urls: Sequence[str], repository: RepositoryView, store: LifecycleStore, *,
                 settings: DeploySettings | None = None) -> None:
        """
        Args:
            triton_urls: "host:port" of the HTTP endpoint of every Triton that serves the repository.
        """
        if not triton_urls:
            raise ValueError("a deployer needs the URL of at least one Triton")
        self.settings = settings or DeploySettings()
        self.nodes = [TritonNode(url, self.settings.load_timeout_s) for url in triton_urls]
        self.repository = repository
        self.store = store
        self._lock = threading.Lock()

    # -- queries ---------------------------------------------------------------------------------------------
    def serving_version(self, name: str) -> str | None:
        """The version the repository publishes as serving (None: none published)."""
        return read_serving_version(self.repository.model_dir(name))

    def status(self, name: str) -> dict[str, Any]:
        """Serving version, deployed stack, versions on disk and per Triton, and the deploy history."""
        check_model_name(name)
        deployment = self.store.deployment(name)
        loaded = {}
        for node in self.nodes:
            try:
                loaded[node.url] = node.ready_versions(name)
            except DeployError:
                loaded[node.url] = None  # unreachable
        return {"model": name, "serving_version": self.serving_version(name), "deployed": list(deployment.stack),
                "rollback_target": deployment.rollback_target, "versions": self.repository.versions(name),
                "loaded": loaded, "history": self.store.history(name)}

    # -- switches --------------------------------------------------------------------------------------------
    def deploy(self, name: str, version: int | str) -> dict[str, Any]:
        """Make `version` of `name` serve. Raises DeployError (nothing changed), VersionNotFound, InvalidName."""
        name, version = check_model_name(name), check_version(version)
        with self._lock:
            return self._switch(name, version, "deploy")

    def rollback(self, name: str) -> dict[str, Any]:
        """Serve again the version deployed before the serving one. Raises NothingToRollBack, DeployError."""
        name = check_model_name(name)
        with self._lock:
            target = self.store.deployment(name).rollback_target
            if target is None:
                raise NothingToRollBack(f"model {name!r} has no earlier deployed version to roll back to")
            return self._switch(name, target, "rollback")

    def _switch(self, name: str, target: str, action: str) -> dict[str, Any]:
        self.repository.version_dir(name, target)  # VersionNotFound
        current = self.serving_version(name)
        config = self._config(name)
        if current == target:  # already published: make sure every Triton serves it (a model exported since)
            for node in self.nodes:
                if target not in node.ready_versions(name):
                    node.load(name, config)
                    self._check_ready(node, name, target, config)
            return {"model": name, "version": target, "previous": current, "changed": False}
        self._check_compatible(name, current, target)
        both = {**config, "version_policy": {"specific": {"versions": sorted({int(target), int(current or target)})}}}
        started = time.monotonic()
        touched: list[TritonNode] = []
        try:
            for node in self.nodes:
                touched.append(node)
                node.load(name, both)
                self._check_ready(node, name, target, config)
        except DeployError as error:
            self._reload(name, touched)  # config.pbtxt still names `current`: the target goes away again
            still = f"version {current} still serves" if current else "nothing was published as serving"
            raise DeployError(f"{action} of {name} version {target} failed: {error.message}; {still}") from error
        if action == "rollback":
            self.store.record_rollback(name, self.store.deployment(name))
        else:
            self.store.record_deploy(name, target, baseline=current)
        publish_serving_version(self.repository.model_dir(name), target)  # the switch
        LOGGER.info("%s: %s now serves version %s (was %s) on %d Triton(s)", action, name, target, current,
                    len(self.nodes))
        unloaded = True
        if current is not None:
            self._drain(name, current)
            unloaded = self._reload(name, self.nodes)
        return {"model": name, "version": target, "previous": current, "changed": True,
                "previous_unloaded": unloaded, "seconds": round(time.monotonic() - started, 3)}

    @staticmethod
    def _check_ready(node: TritonNode, name: str, version: str, config: dict[str, Any]) -> None:
        if version not in node.ready_versions(name):
            raise DeployError(f"Triton {node.url} did not report version {version} ready after loading it")
        node.smoke(name, version, config)

    def _drain(self, name: str, version: str) -> None:
        """Wait the drain time, then while gateways hold `version` (at most hold_s more)."""
        time.sleep(self.settings.drain_s)
        deadline = time.monotonic() + self.settings.hold_s
        while holders := active_holders(self.repository.model_dir(name), version):
            if time.monotonic() >= deadline:
                LOGGER.warning("%s version %s still held by %s after %.0f s: unloading it anyway", name, version,
                               ", ".join(holders), self.settings.hold_s)
                return
            time.sleep(0.5)

    def _reload(self, name: str, nodes: Sequence[TritonNode]) -> bool:
        """Reload `name` with config.pbtxt as it is now on `nodes` (exactly the published version); False if one
        failed. The config is sent explicitly: a plain reload after a load-time override keeps the override."""
        done = True
        config = self._config(name)
        for node in nodes:
            try:
                node.load(name, config)
            except DeployError as error:
                done = False
                LOGGER.error("%s", error.message)
        return done

    def _config(self, name: str) -> dict[str, Any]:
        config = self.repository.config(name)
        if config is None:
            raise VersionNotFound(f"model {name!r} has no config.pbtxt in the model repository")
        return config

    def _check_compatible(self, name: str, current: str | None, target: str) -> None:
        """Versions of one model share one config: same task, inputs and outputs (shapes, so class count too).

        Checked from the model cards; a version without a readable card is left to the smoke inference."""
        if current is None:
            return
        old, new = self.repository.card(name, current), self.repository.card(name, target)
        if old is None or new is None:
            return
        old_io, new_io = _interface(old), _interface(new)
        for key in sorted(old_io.keys() | new_io.keys()):
            if old_io.get(key) != new_io.get(key):
                raise DeployError(f"version {target} of {name} has {key} {new_io.get(key)} but the serving version "
                                  f"{current} has {old_io.get(key)}; versions of one model must share one config")
