"""Deploy and roll back model versions in Triton without dropping a request.

A switch from the serving version S to a target T:
1. pin the gateway's routing to S (requests name their version explicitly from here on);
2. load T next to S: Triton's explicit model control, the model's config with
   `version_policy: {specific: {versions: [S, T]}}` as a load-time override (config.pbtxt is not touched);
3. smoke-infer T with a generated image (every output present, of the configured shape, finite);
4. switch the routing to T (persisted in the lifecycle store first, so it survives restarts);
5. after a short drain (requests already routed to S finish), reload with only T, which unloads S.
Any failure in 1-3 unloads T again and leaves S serving with routing untouched. A rollback is the same switch
to the version deployed before. `restore()` re-applies the recorded versions after Triton (re)starts, since a
fresh Triton loads what config.pbtxt says.

The routing table (`Routing`) says which version of each model the gateway asks Triton for: the inference path
calls `serving_version(name)` on every request (a dictionary read, no I/O) and passes the answer as
`model_version`; None means Triton's own version policy. Entries come from the lifecycle store at start-up, so
routing survives restarts.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from contracts.model_card import ModelCard
from contracts.model_repository import is_version
from lomar_serve.lifecycle.errors import DeployError, NothingToRollBack, VersionNotFound
from lomar_serve.lifecycle.paths import check_model_name, check_version
from lomar_serve.lifecycle.repository_view import RepositoryView
from lomar_serve.lifecycle.store import LifecycleStore

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploySettings:
    load_timeout_s: float = 300.0  # one Triton load (Python-backend stubs start a process per instance)
    drain_s: float = 1.0  # after the routing switch, the old version keeps serving this long before unloading


def _dims(tensor: dict[str, Any]) -> list[int]:
    return [int(d) for d in tensor["dims"]]


def _interface(card: ModelCard) -> dict[str, str]:
    """What versions of one model must agree on: {"task": ..., tensor name: "UINT8 [B,3,224,224]", ...}."""
    tensors = {**card.inputs, **card.outputs}
    return {"task": card.task, **{name: spec.describe() for name, spec in tensors.items()}}


class Routing:
    """Model name -> the version requests go to; safe to read from the event loop and any thread."""

    def __init__(self, store: LifecycleStore | None = None) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, str] = {}
        if store is not None:
            self._versions = {name: d.serving for name, d in store.deployments().items() if d.serving}

    def serving_version(self, name: str) -> str | None:
        return self._versions.get(name)

    def set(self, name: str, version: str) -> None:
        """Send `name`'s requests to `version` from now on."""
        with self._lock:
            self._versions = {**self._versions, name: version}

    def snapshot(self) -> dict[str, str]:
        return dict(self._versions)


class Deployer:
    """Switches the serving version of models in one Triton server; one switch at a time."""

    def __init__(self, triton_url: str, repository: RepositoryView, store: LifecycleStore, routing: Routing, *,
                 settings: DeploySettings | None = None,
                 on_switch: Callable[[str, str], None] | None = None) -> None:
        """
        Args:
            triton_url: "host:port" of Triton's HTTP endpoint.
            on_switch: called with (model, version) right after the routing changed, before the old version is
                unloaded (the gateway refreshes caches and re-indexes image collections there; it may block).
        """
        self.triton_url = triton_url
        self.repository = repository
        self.store = store
        self.routing = routing
        self.settings = settings or DeploySettings()
        self._on_switch = on_switch
        self._lock = threading.Lock()

    # -- queries ---------------------------------------------------------------------------------------------
    def _client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.triton_url, connection_timeout=10.0,
                                                 network_timeout=self.settings.load_timeout_s)

    def ready_versions(self, name: str) -> list[str]:
        """Versions of `name` Triton has loaded and ready, ascending."""
        try:
            index = self._client().get_model_repository_index()
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"Triton's model repository API is not reachable: {error}") from error
        ready = [str(e.get("version", "")) for e in index if e.get("name") == name and e.get("state") == "READY"]
        return sorted((v for v in ready if is_version(v)), key=int)

    def serving_version(self, name: str) -> str | None:
        """The routed version, else the newest version Triton serves (None when none is loaded or Triton is down)."""
        routed = self.routing.serving_version(name)
        if routed is not None:
            return routed
        try:
            ready = self.ready_versions(name)
        except DeployError:
            return None
        return ready[-1] if ready else None

    def status(self, name: str) -> dict[str, Any]:
        """Serving version, deployed stack, versions on disk and in Triton, and the deploy history."""
        check_model_name(name)
        deployment = self.store.deployment(name)
        return {"model": name, "serving_version": self.serving_version(name), "deployed": list(deployment.stack),
                "rollback_target": deployment.rollback_target, "versions": self.repository.versions(name),
                "history": self.store.history(name)}

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

    def restore(self) -> dict[str, str]:
        """Load every recorded serving version that Triton does not serve (after a Triton (re)start).

        Returns {model: version} of what was (re)loaded; failures are logged, not raised.
        """
        restored = {}
        with self._lock:
            for name, deployment in self.store.deployments().items():
                version = deployment.serving
                try:
                    if version is None or self.ready_versions(name) == [version]:
                        continue
                    self._load(name, [version])
                    restored[name] = version
                    LOGGER.info("restored %s version %s in Triton", name, version)
                except (DeployError, VersionNotFound) as error:
                    LOGGER.error("could not restore %s version %s: %s", name, version, error.message)
        return restored

    def _switch(self, name: str, target: str, action: str) -> dict[str, Any]:
        self.repository.version_dir(name, target)  # VersionNotFound
        ready = self.ready_versions(name)
        current = self.routing.serving_version(name) or (ready[-1] if ready else None)
        if current is not None and current not in ready:
            current = None  # recorded but not loaded (e.g. Triton restarted): nothing serves that could break
        if current == target:
            return {"model": name, "version": target, "previous": current, "changed": False}
        self._check_compatible(name, current, target)
        if current is not None:
            self.routing.set(name, current)  # pin: loading `target` must not change where requests go
        started = time.monotonic()
        try:
            self._load(name, sorted({target, *([current] if current else [])}, key=int))
            if target not in self.ready_versions(name):
                raise DeployError(f"Triton did not report version {target} ready after loading it")
            self._smoke(name, target)
        except DeployError as error:
            self._undo(name, current)
            still = f"version {current} still serves" if current else "nothing was serving"
            raise DeployError(f"{action} of {name} version {target} failed: {error.message}; {still}") from error
        if action == "rollback":
            self.store.record_rollback(name, self.store.deployment(name))
        else:
            self.store.record_deploy(name, target, baseline=current)
        self.routing.set(name, target)
        if self._on_switch is not None:
            self._on_switch(name, target)
        LOGGER.info("%s: %s now serves version %s (was %s)", action, name, target, current)
        unloaded = True
        if current is not None:
            time.sleep(self.settings.drain_s)
            try:
                self._load(name, [target])
            except DeployError as error:
                unloaded = False
                LOGGER.warning("%s version %s could not be unloaded: %s", name, current, error.message)
        return {"model": name, "version": target, "previous": current, "changed": True,
                "previous_unloaded": unloaded, "seconds": round(time.monotonic() - started, 3)}

    def _undo(self, name: str, current: str | None) -> None:
        """After a failed switch: only `current` loaded again (or the target unloaded when nothing served)."""
        try:
            if current is not None:
                self._load(name, [current])
            else:
                self._client().unload_model(name)
        except (DeployError, InferenceServerException, OSError) as error:
            LOGGER.error("could not unload the failed version of %s: %s", name, error)

    # -- Triton ----------------------------------------------------------------------------------------------
    def _config(self, name: str) -> dict[str, Any]:
        config = self.repository.config(name)
        if config is None:
            raise VersionNotFound(f"model {name!r} has no config.pbtxt in the model repository")
        return config

    def _load(self, name: str, versions: list[str]) -> None:
        """Load (or reload) `name` with exactly `versions` (the config from disk, version policy overridden)."""
        config = {**self._config(name), "version_policy": {"specific": {"versions": [int(v) for v in versions]}}}
        try:
            self._client().load_model(name, config=json.dumps(config))
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"Triton could not load {name} versions {versions}: {error}") from error

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

    def _smoke(self, name: str, version: str) -> None:
        """One inference on generated inputs: every configured output comes back, shaped as configured, finite."""
        config = self._config(name)
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
            raise DeployError(f"smoke inference on version {version} failed: {error}") from error
        for tensor in config.get("output", []):
            array = result.as_numpy(tensor["name"])
            expected = (1, *_dims(tensor))
            if array is None or tuple(array.shape) != expected or not np.isfinite(array).all():
                shape = None if array is None else tuple(array.shape)
                raise DeployError(f"smoke inference on version {version}: output {tensor['name']} is {shape} "
                                  f"(expected {expected}, finite)")
