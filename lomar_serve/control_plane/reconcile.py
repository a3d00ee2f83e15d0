"""Drive every Triton of the fleet toward what the model repository publishes, at start and then continuously.

The published configuration - each model's config.pbtxt version policy (contracts/triton_config.py) - is the
desired state; what each Triton has loaded is the actual state. Switches change the desired state (deploy.py); this
loop closes whatever gap anything else leaves between the two:
- a Triton that restarted while a config.pbtxt was unreadable never loads that model by itself once the file is
  fixed, and one started before a job exported a new model never loads it: the published version is loaded where
  it is missing or not READY;
- a switch cut short (the control plane killed, a reload that failed) leaves the other version loaded next to the
  published one: versions neither published nor held by a gateway (common/holds.py) are unloaded - but not within
  `drain_s` of a change of config.pbtxt, when gateways may still send requests to the version it named before;
- a deploy history that disagrees with config.pbtxt (a switch interrupted between publishing and recording, a hand
  edit) is repaired in the store (jobs/deploy_history.py);
- the API keys the gateways read (REPO/.api_keys.json) are published again where they differ from the store's
  (a key change whose publish failed, a file deleted by hand: keys.py);
- rollouts (rollouts.py): each active one made to agree with config.pbtxt, each REPO/NAME/.rollout.json published
  again where it differs from the store; the candidate of a running rollout is loaded next to the published version
  where it is missing (a Triton restarted mid-rollout), and kept loaded until `drain_s` after the rollout ended.

It never fights a switch: every change takes the deployer's lock without waiting (Deployer.exclusive), is left to
the next pass while a switch runs, and re-reads the published version and the Triton's state under the lock before
it acts. Looking costs one repository-index call per Triton and a config read per model per pass. A Triton that
fails to load a model is tried again with a backoff (doubling from the interval up to BACKOFF_MAX_S), not on every
pass; one that cannot be reached is skipped until it answers.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from contracts.model_repository import CONFIG_FILE
from lomar_serve.common.holds import held_versions
from lomar_serve.common.rollouts import RolloutFileError, read_rollout, rollout_path
from lomar_serve.common.triton_index import ready_versions
from lomar_serve.control_plane.background import Background
from lomar_serve.control_plane.deploy import Deployer, TritonNode, with_versions
from lomar_serve.jobs.errors import LifecycleError, SwitchInProgress

LOGGER = logging.getLogger(__name__)
BACKOFF_MAX_S = 60.0


@dataclass(frozen=True)
class ReconcileSettings:
    interval_s: float = 5.0  # between two passes
    drain_s: float = 2.0  # a version config.pbtxt named this recently may still receive requests: not unloaded yet


@dataclass(frozen=True)
class Drift:
    """How one Triton's loaded versions of one model differ from the desired ones."""

    published: str
    keep: frozenset[str]  # the versions to have loaded: the published one (and a running rollout's candidate), and
    # loaded ones held or just switched from
    missing: bool  # the published version (or the candidate) is not loaded and READY
    extra: tuple[str, ...]  # loaded versions to unload

    @property
    def converged(self) -> bool:
        return not self.missing and not self.extra


def drift(index: list[dict[str, Any]], name: str, published: str, kept: set[str],
          wanted: frozenset[str] = frozenset()) -> Drift:
    """The drift of model `name` in a Triton repository index, given the versions to keep when they are loaded and
    the versions besides the published one to have loaded (a running rollout's candidate)."""
    ready = ready_versions(index, name)
    want = {published} | wanted
    keep = frozenset(want | (kept & set(ready)))
    return Drift(published, keep, not want <= set(ready), tuple(v for v in ready if v not in keep))


class Reconciler:
    """The control plane's reconcile loop (started and stopped by the Lifecycle, service.py)."""

    def __init__(self, deployer: Deployer, settings: ReconcileSettings | None = None, *,
                 publish_keys: Callable[[], list[str]] | None = None,
                 publish_rollouts: Callable[[], list[str]] | None = None) -> None:
        """
        Args:
            publish_keys: publishes the API keys where they differ from the store, revoking those of ingest jobs that
                ended (keys.py).
            publish_rollouts: makes rollouts agree with config.pbtxt and publishes their files (rollouts.py).
        """
        self.deployer = deployer
        self.settings = settings or ReconcileSettings()
        self.publish_keys = publish_keys
        self.publish_rollouts = publish_rollouts
        self._loop = Background("lomar-reconcile", self._run)
        self._retry_at: dict[tuple[str, str, str], tuple[int, float]] = {}  # (url, model, version) -> failures, when
        self._unreachable: set[str] = set()  # Tritons whose unreachability is logged already

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Repair the deploy histories, publish the API keys and the rollouts now (before the admin API answers),
        then run the loop: a first pass at once, then one every interval."""
        self._guarded(self.repair_histories)
        for publish in (self.publish_keys, self.publish_rollouts):
            if publish is not None:
                self._guarded(publish)
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()  # a load in flight may take longer: the thread is a daemon

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once()
            stop.wait(self.settings.interval_s)

    def run_once(self) -> list[str]:
        """One pass: histories, API keys, rollouts, then every Triton. Returns what it changed (for logs and tests)."""
        keys = self._guarded(self.publish_keys) if self.publish_keys is not None else []
        rollouts = self._guarded(self.publish_rollouts) if self.publish_rollouts is not None else []
        return [*self._guarded(self.repair_histories), *keys, *rollouts, *self._guarded(self.converge)]

    @staticmethod
    def _guarded(step: Any) -> list[str]:
        """The loop outlives any single failure (a store that does not answer, a repository gone for a moment)."""
        try:
            return list(step())
        except Exception:
            LOGGER.exception("reconcile: %s failed; trying again next pass", step.__name__)
            return []

    # -- the deploy history ----------------------------------------------------------------------------------
    def repair_histories(self) -> list[str]:
        """Make every model's deploy history agree with what config.pbtxt publishes (pending switches resolved)."""
        store = self.deployer.store
        pending = store.pending_switches()
        deployments = store.deployments()
        done = []
        for name in sorted(set(pending) | set(deployments)):
            published = self.deployer.serving_version(name)
            deployment = deployments.get(name)
            agrees = deployment is None or deployment.serving in (None, published)
            if published is None or (name not in pending and agrees):
                continue  # nothing single published (nothing to agree with), or it agrees
            try:
                with self.deployer.exclusive(f"the repair of the deploy history of {name}"):
                    published = self.deployer.serving_version(name)
                    _, events = store.repair(name, published)
            except SwitchInProgress:
                continue  # the switch resolves it itself
            for event in events:
                LOGGER.warning("reconcile: deploy history of %s repaired to agree with config.pbtxt: %s to version "
                               "%s (from %s)", name, event.action, event.version, event.previous)
                done.append(f"{name}: history {event.action} {event.version}")
        return done

    # -- the Tritons -----------------------------------------------------------------------------------------
    def converge(self) -> list[str]:
        """Load the published version of every model (and a running rollout's candidate) where it is missing, unload
        what is neither published nor held, on every Triton."""
        desired = {name: version for name in self.deployer.repository.models()
                   if (version := self.deployer.serving_version(name)) is not None}
        done = []
        for node in self.deployer.nodes:
            index = self._index(node)
            if index is None:
                continue
            for name, published in desired.items():
                off = not drift(index, name, published, self._kept(name, index), self._candidate(name, published)
                                ).converged
                if off and self._due(node, name, published):
                    done += self._correct(node, name, published)
        return done

    def _index(self, node: TritonNode) -> list[dict[str, Any]] | None:
        try:
            index = node.repository_index()
        except LifecycleError as error:
            if node.url not in self._unreachable:
                LOGGER.warning("reconcile: %s; skipped until it answers", error.message)
                self._unreachable.add(node.url)
            return None
        if node.url in self._unreachable:
            LOGGER.info("reconcile: Triton %s answers again", node.url)
            self._unreachable.discard(node.url)
        return index

    def _kept(self, name: str, index: list[dict[str, Any]]) -> set[str]:
        """Loaded versions not to unload now: those gateways hold, and all of them within drain_s of a change of
        config.pbtxt (|now - mtime|, as for holds: a skewed clock cannot keep them forever)."""
        model_dir = self.deployer.repository.model_dir(name)
        kept = held_versions(model_dir)
        try:
            changed = (model_dir / CONFIG_FILE).stat().st_mtime
        except OSError:
            return kept
        if abs(time.time() - changed) < self.settings.drain_s:
            kept |= set(ready_versions(index, name))
        return kept | self._ended_candidate(name)

    def _candidate(self, name: str, published: str) -> frozenset[str]:
        """The candidate of the rollout of `name` running on the published version, to have loaded (none: empty)."""
        try:
            rollout = read_rollout(self.deployer.repository.model_dir(name))
        except (OSError, RolloutFileError):
            return frozenset()
        if rollout is None or not rollout.running or rollout.baseline != published:
            return frozenset()
        return frozenset({rollout.candidate})

    def _ended_candidate(self, name: str) -> set[str]:
        """The candidate of a rollout of `name` that ended within drain_s (the file's mtime): gateways may still send
        it requests."""
        model_dir = self.deployer.repository.model_dir(name)
        try:
            rollout = read_rollout(model_dir)
            if rollout is None or rollout.running:
                return set()
            changed = rollout_path(model_dir).stat().st_mtime
        except (OSError, RolloutFileError):
            return set()
        return {rollout.candidate} if abs(time.time() - changed) < self.settings.drain_s else set()

    def _correct(self, node: TritonNode, name: str, published: str) -> list[str]:
        """Under the deployer's lock, with the state read again: load `name` on `node` with the versions to keep."""
        try:
            with self.deployer.exclusive(f"reconciling {name} on Triton {node.url}"):
                if self.deployer.serving_version(name) != published:
                    return []  # switched meanwhile: the next pass looks at the new version
                index = node.repository_index()
                wanted = drift(index, name, published, self._kept(name, index), self._candidate(name, published))
                if wanted.converged:
                    return []
                node.load(name, with_versions(self.deployer.config(name), set(wanted.keep)))
                loaded = node.ready_versions(name)
        except SwitchInProgress:
            return []  # the switch drives this model; the next pass looks again
        except LifecycleError as error:
            self._failed(node, name, published, error.message)
            return []
        if published not in loaded:
            self._failed(node, name, published, f"Triton {node.url} did not report version {published} ready")
            return []
        self._retry_at.pop((node.url, name, published), None)
        LOGGER.warning("reconcile: Triton %s: %s version(s) %s loaded, published %s (%s%s)", node.url, name,
                       ", ".join(loaded), published, "it was missing" if wanted.missing else "it was loaded",
                       f"; unloaded {', '.join(wanted.extra)}" if wanted.extra else "")
        return [f"{node.url}: {name} {' '.join(loaded)}"]

    def _due(self, node: TritonNode, name: str, published: str) -> bool:
        """False while a failed load of this version on this Triton waits out its backoff."""
        entry = self._retry_at.get((node.url, name, published))
        return entry is None or time.monotonic() >= entry[1]

    def _failed(self, node: TritonNode, name: str, published: str, message: str) -> None:
        failures = self._retry_at.get((node.url, name, published), (0, 0.0))[0] + 1
        wait = min(self.settings.interval_s * 2 ** (failures - 1), BACKOFF_MAX_S)
        self._retry_at[(node.url, name, published)] = (failures, time.monotonic() + wait)
        LOGGER.error("reconcile: %s version %s on Triton %s: %s; trying again in %.0f s", name, published, node.url,
                     message, wait)
