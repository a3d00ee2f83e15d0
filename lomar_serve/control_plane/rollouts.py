"""Canary and shadow rollouts across the fleet: a candidate version answers (canary) or sees (shadow) a share of a
model's requests on every gateway, step by step, while guards measured by the gateways decide, and is then deployed or
rolled back. The rules are in lomar_serve/jobs/rollouts.py and jobs/guards.py; the gateways' side in
lomar_serve/gateway/rollout_traffic.py; docs/rollouts.md tells the whole story.

    controller = RolloutController(deployer, RolloutSettings(interval_s=1.0, lease_s=30.0))
    controller.begin("lomar_classifier", "3", RolloutPlan("canary", (10.0, 50.0)))   # the split starts
    controller.start()                                   # the guard loop: advance, promote or roll back

Begin: under the deployer's lock (one change to the fleet at a time), the candidate is loaded next to the serving
version on every Triton, READY and smoke-tested (Deployer.stage; on failure nothing changed), the rollout is recorded
in the lifecycle store, then published as REPO/NAME/.rollout.json (common/rollouts.py). The store is written first and
the file after, for every change: the file is derived from the store, and whatever stops the control plane between
the two writes, the reconcile loop publishes the file again from the store (`reconcile`, before the admin API answers
at a start and on every pass after). While a rollout runs, config.pbtxt keeps publishing the baseline, so a Triton
that starts loads it; the reconcile loop loads the candidate there too, and a gateway whose Triton lacks it answers
with the baseline meanwhile.

The guard loop, every `interval_s`: renews each running rollout's file (gateways stop following a rollout not renewed
for `lease_s`: a control plane that is down runs no canary), sums the gateways' reports of the current step
(common/rollout_figures.py) and applies jobs/guards.py's verdict:
- a guard tripped: rolled back at once (recorded with the figures, published; the candidate is unloaded after the
  drain time, when no gateway sends it requests any more);
- the step passed: the next step is recorded, then published;
- the last step passed: promoted - the rollout is marked `promoting`, the candidate deployed by the deployer (an
  ordinary deploy: config.pbtxt switched, the deploy history written, the baseline unloaded after the drain), then
  marked `promoted`. A control plane that stops in between is made to agree with config.pbtxt at its next start
  (jobs/rollouts.py `reconciled`: promoted when the candidate is published, running again when the baseline is).
While a rollout of a model is active, deploys and rollbacks of that model are refused (409 rollout_in_progress).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lomar_serve.common.rollout_figures import StepFigures, clear_reports, read_reports, total
from lomar_serve.common.rollouts import RolloutFileError, publish_rollout, read_rollout
from lomar_serve.control_plane.background import Background
from lomar_serve.control_plane.deploy import Deployer, pause_at
from lomar_serve.jobs.errors import (DeployError, LifecycleError, RolloutConflict, RolloutInProgress, RolloutNotFound,
                                     SwitchInProgress)
from lomar_serve.jobs.guards import checks, decide
from lomar_serve.jobs.paths import check_model_name, check_version
from lomar_serve.jobs.rollouts import ACTIVE_STATES, RolloutPlan, RolloutRecord, new_rollout_id, reconciled

LOGGER = logging.getLogger(__name__)
ROLLOUT_STEPS = ("rollout-recorded", "step-recorded", "rollout-switched")  # where pause_dir can stop the controller


@dataclass(frozen=True)
class RolloutSettings:
    interval_s: float = 1.0  # between two judgements of every running rollout (and renewals of its file)
    lease_s: float = 30.0  # gateways stop following a running rollout whose file is not renewed for this long
    drain_s: float = 2.0  # after a rollout ends, the candidate stays loaded this long (gateways still send to it)
    pause_dir: Path | None = None  # fault injection for tests: deploy.pause_at


class RolloutController:
    """Begins, judges, advances, promotes and ends the rollouts of every model; one per control plane."""

    def __init__(self, deployer: Deployer, settings: RolloutSettings | None = None) -> None:
        self.deployer = deployer
        self.store = deployer.store
        self.settings = settings or RolloutSettings()
        deployer.refuse_switch = self.refuse_switch
        self._lock = threading.Lock()  # a store change and its publish, one at a time: no stale file overwrites
        self._promoting: set[str] = set()  # rollouts this control plane is promoting now
        self._guards = Background("lomar-rollouts", self._loop)

    # -- requests ------------------------------------------------------------------------------------------------
    def begin(self, name: str, version: int | str, plan: RolloutPlan) -> RolloutRecord:
        """Start a rollout of `version` of `name` against the serving version. Raises RolloutInProgress,
        DeployError (the candidate failed to load or smoke; nothing changed), VersionNotFound, SwitchInProgress."""
        name, version = check_model_name(name), check_version(version)
        with self.deployer.exclusive(f"the {plan.mode} of {name} version {version}"):
            latest = self.store.latest_rollout(name)
            if latest is not None and latest.active:
                raise RolloutInProgress(f"{name} has an active {latest.plan.mode} of version {latest.candidate} "
                                        f"({latest.id}): promote or abort it first")
            baseline = self.deployer.serving_version(name)
            if baseline is None:
                raise DeployError(f"{name} has no serving version to compare a candidate with (config.pbtxt "
                                  "publishes none): deploy one first")
            if baseline == version:
                raise DeployError(f"version {version} of {name} serves already")
            self.deployer.stage(name, version, baseline)
            try:
                record = self.store.create_rollout(new_rollout_id(), name, baseline, version, plan)
            except Exception:
                self.deployer.unload_unpublished(name)
                raise
            pause_at(self.settings.pause_dir, "rollout-recorded")
            model_dir = self.deployer.repository.model_dir(name)
            clear_reports(model_dir)
            try:
                with self._lock:
                    publish_rollout(model_dir, record.published(self.settings.lease_s))
            except OSError as error:
                self.store.move_rollout(record.id, ACTIVE_STATES, "aborted",
                                        reason=f"the rollout could not be published: {error}")
                self.deployer.unload_unpublished(name)
                raise DeployError(f"the {plan.mode} of {name} version {version} could not be published ({error}); "
                                  f"version {baseline} still serves alone") from error
        LOGGER.info("rollout %s: %s of %s version %s against %s begins at %s %%", record.id, plan.mode, name, version,
                    baseline, record.percent)
        return record

    def promote(self, name: str) -> RolloutRecord:
        """Deploy the candidate of the model's running rollout now, whatever step it is at."""
        record = self._active(check_model_name(name))
        return self._promote(record, f"promoted by an operator at step {record.step + 1} ({record.percent:g} %)")

    def abort(self, name: str) -> RolloutRecord:
        """End the model's running rollout: every request goes to the baseline again."""
        record = self._active(check_model_name(name))
        return self._end(record, "aborted", f"aborted by an operator at step {record.step + 1} ({record.percent:g} %)")

    def describe(self, name: str) -> dict[str, Any] | None:
        """The model's latest rollout with, while it is active, the figures and checks of its current step (after
        it, those recorded with its last decision); None when the model never had one."""
        record = self.store.latest_rollout(check_model_name(name))
        if record is None:
            return None
        described = record.to_dict()
        if record.active:
            figures = self._figures(record)
            described["figures"] = figures.summary()
            described["checks"] = [c.to_dict() for c in checks(record.plan.guards, figures, record.baseline,
                                                                record.candidate)]
        else:
            last = next((event for event in reversed(record.events) if "checks" in event), {})
            described["figures"], described["checks"] = last.get("figures"), last.get("checks", [])
        return described

    def refuse_switch(self, name: str, version: str | None) -> None:
        """The deployer's hook: no deploy or rollback of a model while a rollout of it is active, but its own
        promotion."""
        record = self.store.latest_rollout(name)
        if record is None or not record.active:
            return
        if record.state == "promoting" and record.id in self._promoting and version == record.candidate:
            return
        raise RolloutInProgress(f"{name} has an active {record.plan.mode} of version {record.candidate} at "
                                f"{record.percent:g} % ({record.state}): promote or abort it first (lomar rollout "
                                f"promote|abort {name})")

    # -- the guard loop ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._guards.start()

    def stop(self) -> None:
        self._guards.stop()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.interval_s):
            try:
                self.tick()
            except Exception:  # the loop outlives any single failure (a store that does not answer)
                LOGGER.exception("rollouts: the guard loop failed; trying again")

    def tick(self) -> list[str]:
        """Renew and judge every running rollout once; what it did."""
        done = []
        for record in self.store.active_rollouts():
            if record.state != "running":
                continue  # being promoted
            try:
                self._sync(record.model)
                done += self._judge(record)
            except (LifecycleError, OSError) as error:
                LOGGER.warning("rollout %s of %s: %s", record.id, record.model, getattr(error, "message", error))
        return done

    def _judge(self, record: RolloutRecord) -> list[str]:
        figures = self._figures(record)
        plan = record.plan
        verdict = decide(plan.guards, figures, record.baseline, record.candidate,
                         elapsed_s=self.store.now() - record.step_started_at, min_seconds=plan.min_seconds,
                         min_requests=plan.min_requests, last_step=record.last_step)
        if verdict.action == "wait":
            return []
        details = {"figures": figures.summary(), "checks": [c.to_dict() for c in verdict.checks]}
        if verdict.action == "rollback":
            self._end(record, "rolled_back", verdict.reason, details)
            return [f"{record.model}: rolled back ({verdict.reason})"]
        if verdict.action == "advance":
            with self._lock:
                moved = self.store.move_rollout(record.id, ("running",), "running", at_step=record.step,
                                                next_step=True, reason=f"every guard passed at {record.percent:g} %",
                                                details=details)
                pause_at(self.settings.pause_dir, "step-recorded")
                publish_rollout(self.deployer.repository.model_dir(record.model),
                                moved.published(self.settings.lease_s))
            LOGGER.info("rollout %s: %s version %s now at %s %%", record.id, record.model, record.candidate,
                        moved.percent)
            return [f"{record.model}: {moved.percent:g} %"]
        threading.Thread(target=self._promote_logged, args=(record, "every step passed", details), daemon=True,
                         name=f"lomar-promote-{record.model}").start()
        return [f"{record.model}: promoting"]

    def _figures(self, record: RolloutRecord) -> StepFigures:
        return total(read_reports(self.deployer.repository.model_dir(record.model)), record.id, record.step)

    # -- transitions -----------------------------------------------------------------------------------------
    def _active(self, name: str) -> RolloutRecord:
        record = self.store.latest_rollout(name)
        if record is None or not record.active:
            raise RolloutNotFound(f"{name} has no active rollout")
        if record.state == "promoting":
            raise RolloutConflict(f"the rollout {record.id} of {name} is being promoted")
        return record

    def _end(self, record: RolloutRecord, state: str, reason: str,
             details: dict[str, Any] | None = None) -> RolloutRecord:
        """Roll back or abort: recorded, published (every gateway back on the baseline within its routing interval),
        then after the drain the candidate unloaded."""
        with self._lock:
            record = self.store.move_rollout(record.id, ("running",), state, reason=reason, details=details)
            self._publish_logged(record)
        LOGGER.warning("rollout %s: %s version %s %s: %s", record.id, record.model, record.candidate,
                       state.replace("_", " "), reason)
        threading.Thread(target=self._unload, args=(record,), daemon=True,
                         name=f"lomar-rollout-unload-{record.model}").start()
        return record

    def _promote_logged(self, record: RolloutRecord, reason: str, details: dict[str, Any]) -> None:
        try:
            self._promote(record, reason, details)
        except LifecycleError as error:
            LOGGER.warning("rollout %s of %s: promotion not done: %s", record.id, record.model, error.message)

    def _promote(self, record: RolloutRecord, reason: str,
                 details: dict[str, Any] | None = None) -> RolloutRecord:
        """Mark it promoting, deploy the candidate (Deployer.deploy lets this one through refuse_switch), mark it
        promoted. Another switch in progress: running again (SwitchInProgress raised); a deploy that fails: rolled
        back with why (DeployError raised)."""
        with self._lock:
            record = self.store.move_rollout(record.id, ("running",), "promoting", reason=reason, details=details)
            self._promoting.add(record.id)
        try:
            try:
                switch = self.deployer.deploy(record.model, record.candidate)
            except SwitchInProgress:
                self.store.move_rollout(record.id, ("promoting",), "running",
                                        reason="the promotion waits: another switch was in progress")
                raise
            except LifecycleError as error:
                self._fail_promotion(record, error.message)
                raise
            pause_at(self.settings.pause_dir, "rollout-switched")
            with self._lock:
                record = self.store.move_rollout(record.id, ("promoting",), "promoted", reason=reason,
                                                 details={"switch": switch})
                self._publish_logged(record)
        finally:
            self._promoting.discard(record.id)
        LOGGER.info("rollout %s: %s version %s promoted (%s)", record.id, record.model, record.candidate, reason)
        return record

    def _fail_promotion(self, record: RolloutRecord, message: str) -> None:
        with self._lock:
            failed = self.store.move_rollout(record.id, ("promoting",), "rolled_back",
                                             reason=f"the promotion's deploy failed: {message}")
            self._publish_logged(failed)
        self._unload(failed)

    def _unload(self, record: RolloutRecord) -> None:
        """After the drain, every Triton reloads the model with config.pbtxt as it is: the candidate goes. Left to
        the reconcile loop when another switch runs or a Triton fails."""
        time.sleep(self.settings.drain_s)
        try:
            with self.deployer.exclusive(f"unloading {record.model} version {record.candidate} after its rollout"):
                self.deployer.unload_unpublished(record.model)
        except (SwitchInProgress, DeployError) as error:
            LOGGER.info("rollout %s: the reconcile loop unloads version %s (%s)", record.id, record.candidate,
                        error.message)

    # -- agreement of the published files with the store ---------------------------------------------------
    def reconcile(self) -> list[str]:
        """The reconcile loop's step (also run at start, before the admin API answers): every active rollout made to
        agree with what config.pbtxt publishes, then every model's rollout file with the store."""
        done = []
        for record in self.store.active_rollouts():
            if record.id in self._promoting:
                continue  # its promotion records the outcome itself
            outcome = reconciled(record, self.deployer.serving_version(record.model))
            if outcome is None:
                continue
            state, reason = outcome
            with self._lock:
                self.store.move_rollout(record.id, (record.state,), state, reason=reason)
            LOGGER.warning("rollout %s of %s: %s (%s)", record.id, record.model, state, reason)
            done.append(f"{record.model}: rollout {state}")
        for name in self.deployer.repository.models():
            if self._sync(name):
                done.append(f"{name}: rollout file published")
        return done

    def _sync(self, name: str) -> bool:
        """Publish the model's rollout file as the store has it (renewing an active one); whether it changed. A
        running rollout published that the store does not know is published aborted."""
        model_dir = self.deployer.repository.model_dir(name)
        with self._lock:
            record = self.store.latest_rollout(name)  # read under the lock: never publish a state already left
            try:
                current = read_rollout(model_dir)
            except (OSError, RolloutFileError) as error:
                LOGGER.warning("the rollout file of %s cannot be read (%s): published again", name, error)
                current = None
                if record is None:
                    return False
            if record is None:
                if current is None or not current.running:
                    return False
                LOGGER.warning("rollout %s of %s is published running but unknown to the lifecycle store: published "
                               "aborted", current.id, name)
                return publish_rollout(model_dir, replace(current, state="aborted"))
            if not record.active and current is None:
                return False  # nothing to stop
            return publish_rollout(model_dir, record.published(self.settings.lease_s))

    def _publish_logged(self, record: RolloutRecord) -> None:
        try:
            publish_rollout(self.deployer.repository.model_dir(record.model), record.published(self.settings.lease_s))
        except OSError as error:  # the store has it; the reconcile loop publishes it when the disk allows
            LOGGER.error("rollout %s of %s not published (%s); the reconcile loop tries again", record.id,
                         record.model, error)
