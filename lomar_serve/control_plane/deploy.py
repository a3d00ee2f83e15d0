"""Deploy and roll back model versions on every Triton of a fleet without dropping a request.

The serving version of a model is published in the shared model repository (contracts/triton_config.py: the
version policy of REPO/NAME/config.pbtxt): it is the desired state. Every Triton start loads it, every gateway
routes to it, and the control plane's reconcile loop (reconcile.py) drives every Triton to it. A switch from the
serving version S to a target T:
1. on every Triton: load T next to S (explicit model control, the config with `version_policy: {specific:
   {versions: [S, T]}}` as a load-time override), check T is READY, smoke-infer T with a generated input (every
   output present, of the configured shape, finite);
2. note the switch as pending in the lifecycle store, publish T in config.pbtxt - this is the switch; gateways follow
   within their routing interval - then complete it in the store (deploy history, rollback stack). Publishing
   before recording means the history never names a version that did not serve; a control plane killed between
   the two (or a store write that fails) leaves the pending switch, which the store's repair completes or drops
   against what config.pbtxt publishes (lomar_serve/jobs/deploy_history.py) at start and in the reconcile loop;
3. after a drain (gateways still sending to S finish: at least two gateway routing intervals) and while a gateway
   holds S for a re-index of its image collections (lomar_serve/common/holds.py, at most `hold_s`), reload the model on
   every Triton with config.pbtxt as it is now, naming T only: S is unloaded.
A failure in 1 anywhere, or a pending note or publish that cannot be written, reloads every touched Triton with
config.pbtxt, which still names S: T is unloaded and S serves everywhere, as before. A rollback is the same switch to
the version deployed before. One change at a time: a switch requested while another switch (or a reconcile step)
runs is refused at once (SwitchInProgress), never queued to run after its client has gone. A Triton that restarts at
any point loads what config.pbtxt names, and the reconcile loop unloads what a killed switch left loaded, so a
version that never passed step 1 is never loaded for long.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http
from google.protobuf.text_format import ParseError
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from contracts.model_card import ModelCard
from contracts.triton_config import ConfigError, publish_serving_version, read_serving_version
from lomar_serve.common.holds import active_holders
from lomar_serve.common.triton_index import ready_versions
from lomar_serve.jobs.deploy_history import PendingSwitch
from lomar_serve.jobs.errors import DeployError, HistoryConflict, NothingToRollBack, SwitchInProgress, VersionNotFound
from lomar_serve.jobs.paths import check_model_name, check_version
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.store import LifecycleStore

LOGGER = logging.getLogger(__name__)
SWITCH_STEPS = ("loading", "published", "recorded", "draining")  # where a switch can be paused (pause_dir)


@dataclass(frozen=True)
class DeploySettings:
    load_timeout_s: float = 300.0  # one Triton load (Python-backend stubs start a process per instance)
    drain_s: float = 2.0  # after the switch, the old version keeps serving this long before unloading
    hold_s: float = 600.0  # at most this long more while gateways hold the old version (collection re-index)
    pause_dir: Path | None = None  # fault injection for tests: Deployer._pause_at


def _dims(tensor: dict[str, Any]) -> list[int]:
    return [int(d) for d in tensor["dims"]]


def _interface(card: ModelCard) -> dict[str, str]:
    """What versions of one model must agree on: {"task": ..., tensor name: "UINT8 [B,3,224,224]", ...}."""
    tensors = {**card.inputs, **card.outputs}
    return {"task": card.task, **{name: spec.describe() for name, spec in tensors.items()}}


def with_versions(config: dict[str, Any], versions: set[str]) -> dict[str, Any]:
    """`config` (Triton's JSON form) with a version policy that loads exactly `versions`: a load with it as the
    override loads the ones missing, keeps the loaded ones serving untouched, and unloads the others."""
    return {**config, "version_policy": {"specific": {"versions": sorted(int(v) for v in versions)}}}


class TritonNode:
    """The model-control operations a deploy needs on one Triton server."""

    def __init__(self, url: str, load_timeout_s: float) -> None:
        self.url = url  # "host:port" of its HTTP endpoint
        self._load_timeout_s = load_timeout_s

    def _client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.url, connection_timeout=10.0,
                                                 network_timeout=self._load_timeout_s)

    def repository_index(self) -> list[dict[str, Any]]:
        """Every model version this Triton knows, with its state: [{name, version, state, reason}]."""
        try:
            return list(self._client().get_model_repository_index())
        except (InferenceServerException, OSError) as error:
            raise DeployError(f"Triton {self.url} is not reachable: {error}") from error

    def ready_versions(self, name: str) -> list[str]:
        """Versions of `name` this Triton has loaded and ready, ascending."""
        return ready_versions(self.repository_index(), name)

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
    """Switches the serving version of models on every Triton of the fleet; one change at a time."""

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
        self._running: str | None = None  # what holds the lock, for the refusal's message
        # Called under the lock before a deploy (name, version) or rollback (name, None) of a model; raises to
        # refuse it (a rollout of the model is active: rollouts.py).
        self.refuse_switch: Callable[[str, str | None], None] = lambda name, version: None

    # -- one change at a time --------------------------------------------------------------------------------
    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Run `what` (a switch, a reconcile step) as the only change to what the fleet serves. Raises
        SwitchInProgress at once when another runs: a caller that waited could have gone by the time its turn came,
        and its switch would then happen unasked."""
        if not self._lock.acquire(blocking=False):
            running = self._running or "another switch"
            raise SwitchInProgress(f"{what} refused: {running} is in progress; try again when it has finished")
        self._running = what
        try:
            yield
        finally:
            self._running = None
            self._lock.release()

    # -- queries ---------------------------------------------------------------------------------------------
    def serving_version(self, name: str) -> str | None:
        """The version the repository publishes as serving (None: none published)."""
        return read_serving_version(self.repository.model_dir(name))

    def summary(self, name: str) -> dict[str, Any]:
        """Serving version, deployed stack, rollback target and versions on disk (no Triton is asked)."""
        check_model_name(name)
        deployment = self.store.deployment(name)
        return {"model": name, "serving_version": self.serving_version(name), "deployed": list(deployment.stack),
                "rollback_target": deployment.rollback_target, "versions": self.repository.versions(name)}

    def summaries(self) -> list[dict[str, Any]]:
        """`summary` of every model of the repository, by name."""
        return [self.summary(name) for name in self.repository.models()]

    def status(self, name: str) -> dict[str, Any]:
        """Serving version, deployed stack, versions on disk with their model cards and per Triton, and the deploy
        history."""
        loaded = {}
        for node in self.nodes:
            try:
                loaded[node.url] = node.ready_versions(name)
            except DeployError:
                loaded[node.url] = None  # unreachable
        summary = self.summary(name)
        cards = {}
        for version in summary["versions"]:
            card = self.repository.card(name, version)
            cards[version] = None if card is None else card.to_dict()
        return {**summary, "cards": cards, "loaded": loaded, "history": self.store.history(name)}

    def config(self, name: str) -> dict[str, Any]:
        """config.pbtxt as Triton's JSON model configuration. Raises VersionNotFound (none), DeployError
        (unreadable)."""
        try:
            config = self.repository.config(name)
        except (OSError, ParseError, UnicodeDecodeError) as error:
            raise DeployError(f"the config.pbtxt of {name!r} cannot be read: {error}") from error
        if config is None:
            raise VersionNotFound(f"model {name!r} has no config.pbtxt in the model repository")
        return config

    # -- switches --------------------------------------------------------------------------------------------
    def deploy(self, name: str, version: int | str) -> dict[str, Any]:
        """Make `version` of `name` serve. Raises DeployError (nothing changed), VersionNotFound, InvalidName,
        SwitchInProgress."""
        name, version = check_model_name(name), check_version(version)
        with self.exclusive(f"the deploy of {name} version {version}"):
            self.refuse_switch(name, version)
            self.store.repair(name, self.serving_version(name))  # the switch is recorded on a history that agrees
            return self._switch(name, version, "deploy")

    def rollback(self, name: str) -> dict[str, Any]:
        """Serve again the version deployed before the serving one. Raises NothingToRollBack, HistoryConflict,
        DeployError, SwitchInProgress."""
        name = check_model_name(name)
        with self.exclusive(f"the rollback of {name}"):
            self.refuse_switch(name, None)
            return self._switch(name, self._rollback_target(name), "rollback")

    def _rollback_target(self, name: str) -> str:
        """The version below the serving one in a history that agrees with config.pbtxt. A history that did not
        agree is repaired and the rollback refused: the caller chose it seeing the history that was wrong."""
        published = self.serving_version(name)
        deployment, events = self.store.repair(name, published)
        if events:
            changes = "; ".join(f"{e.action} to version {e.version} (from {e.previous})" for e in events)
            raise HistoryConflict(
                f"the deploy history of {name!r} did not agree with config.pbtxt, which publishes version {published} "
                f"(a switch interrupted after publishing, or a hand edit); repaired: {changes}. Deployed now: "
                f"{', '.join(deployment.stack)}; a rollback now serves version {deployment.rollback_target or '(none)'}"
                " - send it again to do that")
        if deployment.rollback_target is None:
            raise NothingToRollBack(f"model {name!r} has no earlier deployed version to roll back to")
        return deployment.rollback_target

    def _switch(self, name: str, target: str, action: str) -> dict[str, Any]:
        self.repository.version_dir(name, target)  # VersionNotFound
        current = self.serving_version(name)
        config = self.config(name)
        if current == target:  # already published: make sure every Triton serves it (a model exported since)
            return self._confirm(name, target, config)
        started = time.monotonic()
        try:
            self.stage(name, target, current)
        except DeployError as error:  # config.pbtxt still names `current`: the target went away again
            raise DeployError(f"{action} of {name} version {target} failed: {error.message}; {_still(current)}") \
                from error
        self._publish(name, PendingSwitch(name, action, target, current))  # the switch
        LOGGER.info("%s: %s now serves version %s (was %s) on %d Triton(s)", action, name, target, current,
                    len(self.nodes))
        self._pause_at("published")
        recorded = self._complete(name, target)
        self._pause_at("recorded")
        unloaded = True
        if current is not None:
            self._drain(name, current)
            unloaded = self._reload(name, self.nodes)
        return {"model": name, "version": target, "previous": current, "changed": True, "recorded": recorded,
                "previous_unloaded": unloaded, "seconds": round(time.monotonic() - started, 3),
                "message": f"{name} now serves version {target}" + (f" (was {current})" if current else "")}

    def _confirm(self, name: str, version: str, config: dict[str, Any]) -> dict[str, Any]:
        """A deploy of the version config.pbtxt already publishes: loaded and smoke-tested on every Triton that lacks
        it. Export publishes a model's first version itself, so the first deploy of a new model lands here: it enters
        the deploy history then, as the model's first deploy (from nothing)."""
        loaded = []
        for node in self.nodes:
            if version not in node.ready_versions(name):
                node.load(name, config)
                self._check_ready(node, name, version, config)
                loaded.append(node.url)
        where = f"; loaded and smoke-tested on {', '.join(loaded)}" if loaded else ""
        if self.store.deployment(name).stack:
            return {"model": name, "version": version, "previous": version, "changed": False,
                    "message": f"version {version} of {name} already serves{where}"}
        self.store.record_deploy(name, version)
        LOGGER.info("deploy: %s version %s, published by its export, recorded as the model's first deploy", name,
                    version)
        return {"model": name, "version": version, "previous": None, "changed": False, "recorded": True,
                "message": f"version {version} is the first deployed version of {name}: its export published it as "
                           f"serving{where or ' (every Triton has it ready)'}; recorded in the deploy history"}

    def _publish(self, name: str, switch: PendingSwitch) -> None:
        """Note the switch as pending, then publish its version. When either cannot be written nothing switched:
        every Triton reloads config.pbtxt as it is (the target unloads) and DeployError says why."""
        failure = f"{switch.action} of {name} version {switch.version} failed"
        try:
            self.store.begin_switch(switch)
        except Exception as error:  # StoreUnavailable or the driver's error (a full disk, a lost database)
            self._reload(name, self.nodes)
            raise DeployError(f"{failure}: the deploy history cannot be written ({error}); "
                              f"{_still(switch.previous)}") from error
        try:
            publish_serving_version(self.repository.model_dir(name), switch.version)
        except (OSError, ConfigError) as error:
            if self.serving_version(name) == switch.version:  # written after all: the switch happened
                LOGGER.warning("publishing %s version %s reported %s, but config.pbtxt names it", name,
                               switch.version, error)
                return
            self._forget(name)
            self._reload(name, self.nodes)
            raise DeployError(f"{failure}: config.pbtxt cannot be written ({error}); {_still(switch.previous)}") \
                from error

    def _complete(self, name: str, version: str) -> bool:
        """Record the published switch in the history; False when the store fails (the reconcile loop's repair
        records it: the pending switch names a version config.pbtxt publishes)."""
        try:
            self.store.complete_switch(name, version)
            return True
        except Exception as error:  # StoreUnavailable or the driver's error
            LOGGER.error("%s version %s serves but the deploy history cannot be written (%s); the reconcile loop "
                         "records it when the store answers", name, version, error)
            return False

    def _forget(self, name: str) -> None:
        """Drop the pending switch of a publish that failed (best effort: a pending switch whose version is not
        published is dropped by the next repair anyway)."""
        try:
            self.store.discard_switch(name)
        except Exception as error:  # StoreUnavailable or the driver's error
            LOGGER.warning("cannot drop the pending switch of %s (%s); the reconcile loop drops it", name, error)

    def _pause_at(self, step: str) -> None:
        pause_at(self.settings.pause_dir, step)

    @staticmethod
    def _check_ready(node: TritonNode, name: str, version: str, config: dict[str, Any]) -> None:
        if version not in node.ready_versions(name):
            raise DeployError(f"Triton {node.url} did not report version {version} ready after loading it")
        node.smoke(name, version, config)

    def _drain(self, name: str, version: str) -> None:
        """Wait the drain time, then while gateways hold `version` (at most hold_s more)."""
        self._pause_at("draining")
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
        failed (the reconcile loop tries again). The config is sent explicitly: a plain reload after a load-time
        override keeps the override."""
        done = True
        config = self.config(name)
        for node in nodes:
            try:
                node.load(name, config)
            except DeployError as error:
                done = False
                LOGGER.error("%s", error.message)
        return done

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


    def stage(self, name: str, target: str, current: str | None) -> None:
        """Load `target` next to the serving `current` (None: nothing serves) on every Triton, check it READY and
        smoke-infer it: step 1 of a switch, and the start of a rollout (rollouts.py), which then routes part of the
        traffic to it. Raises DeployError (after reloading every touched Triton with config.pbtxt as it is: `target`
        unloaded) and VersionNotFound."""
        self.repository.version_dir(name, target)  # VersionNotFound
        self._check_compatible(name, current, target)
        config = self.config(name)
        both = with_versions(config, {target, current or target})
        touched: list[TritonNode] = []
        try:
            for node in self.nodes:
                touched.append(node)
                node.load(name, both)
                self._check_ready(node, name, target, config)
                self._pause_at("loading")
        except DeployError:
            self._reload(name, touched)
            raise

    # -- for rollouts (rollouts.py) -------------------------------------------------------------------------
    def unload_unpublished(self, name: str) -> bool:
        """Reload `name` on every Triton with config.pbtxt as it is: only the published version stays loaded.
        False if a Triton failed (the reconcile loop tries again)."""
        return self._reload(name, self.nodes)


def pause_at(folder: Path | None, step: str) -> None:
    """Fault injection for tests: while `folder`/STEP exists, the caller waits at that step (after creating
    STEP.reached), so that a test can kill the control plane exactly there. Steps: SWITCH_STEPS, and the rollout
    controller's ROLLOUT_STEPS."""
    if folder is None or not (folder / step).exists():
        return
    (folder / f"{step}.reached").touch()
    LOGGER.warning("paused at step %r while %s exists", step, folder / step)
    while (folder / step).exists():
        time.sleep(0.05)


def _still(version: str | None) -> str:
    """What serves after a switch that did not happen."""
    return f"version {version} still serves" if version else "nothing was published as serving"
