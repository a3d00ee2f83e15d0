"""The job store as a worker calls it: every call rides out a short outage of the store.

A worker's job outlives many store calls (claims, heartbeats, progress, stage updates, final states), and the
store may be away for a while (PostgreSQL restarting, a failover, a network blip). A call that meets
`StoreUnavailable` is tried again with exponential backoff and jitter (so a fleet of workers does not hammer a
store that comes back) for up to a budget, `store_retry_s`, by default the control plane's heartbeat timeout:
past it the control plane may have given the job up anyway. Only `StoreUnavailable` is tried again: any other
error is the statement's and would fail again.

Progress is written with `try_update_job`, once: the next poll writes it again, so a retry would only hold up
the poll loop. Whether a call is retried or not, an outage is logged twice per kind of call (claims, the
heartbeats of a job, its progress, its records): when its first call fails, and when a call succeeds again.

    store = RetryingStore(open_store(url), budget_s=15.0)
    store.update_job(job_id, stage="export")        # StoreUnavailable only after 15 s of failed tries
    store.try_update_job(job_id, progress=0.4)      # False at once when the store is away
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (Retrying, retry_if_exception_type, stop_before_delay, stop_when_event_set, wait_exponential,
                      wait_random)

from lomar_serve.jobs.errors import StoreUnavailable
from lomar_serve.jobs.store import Heartbeat, JobRecord, LifecycleStore

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_WAIT_S = 0.1  # the first pause between tries, then doubled ...
MAX_WAIT_S = 2.0  # ... up to this: a store that is back is seen within about this long
JITTER_S = 0.25  # added at random to each pause, so that workers do not try in step


class RetryingStore:
    """A worker's calls into a LifecycleStore, tried again on StoreUnavailable for up to `budget_s` each."""

    def __init__(self, store: LifecycleStore, budget_s: float) -> None:
        if budget_s <= 0:
            raise ValueError(f"the store retry budget must be positive, got {budget_s}")
        self.store = store
        self.budget_s = budget_s
        self._lock = threading.Lock()
        self._outages: dict[str, float] = {}  # kind of call -> when its outage began (monotonic)

    def describe(self) -> str:
        return self.store.describe()

    # -- calls -----------------------------------------------------------------------------------------------
    def claim_next(self, worker_id: str, *, until: threading.Event | None = None) -> JobRecord | None:
        """LifecycleStore.claim_next, retried (until `until` is set, if given)."""
        return self._retried("claims", lambda: self.store.claim_next(worker_id), until)

    def heartbeat(self, job_id: str, worker_id: str, *, until: threading.Event | None = None) -> Heartbeat:
        """LifecycleStore.heartbeat, retried (until `until` is set, if given)."""
        return self._retried(f"heartbeats of job {job_id}", lambda: self.store.heartbeat(job_id, worker_id), until)

    def get_job(self, job_id: str) -> JobRecord:
        return self._retried(f"the record of job {job_id}", lambda: self.store.get_job(job_id))

    def update_job(self, job_id: str, **values: Any) -> JobRecord:
        return self._retried(f"the record of job {job_id}", lambda: self.store.update_job(job_id, **values))

    def transition(self, job_id: str, from_states: tuple[str, ...], to_state: str, message: str | None = None, *,
                   owner: str | None = None) -> JobRecord:
        return self._retried(f"the record of job {job_id}",
                             lambda: self.store.transition(job_id, from_states, to_state, message, owner=owner))

    def try_update_job(self, job_id: str, **values: Any) -> bool:
        """LifecycleStore.update_job tried once (progress: the next poll writes it again); False when the store
        is away."""
        what = f"progress of job {job_id}"
        try:
            self._attempt(what, "the stage goes on; its next poll writes the progress again",
                          lambda: self.store.update_job(job_id, **values))
        except StoreUnavailable:
            return False
        self._recovered(what)
        return True

    # -- the policy ------------------------------------------------------------------------------------------
    def _retried(self, what: str, call: Callable[[], T], until: threading.Event | None = None) -> T:
        """`call()`, tried again on StoreUnavailable with exponential backoff for up to the budget (or until
        `until` is set); the last StoreUnavailable when every try failed."""
        stop = stop_before_delay(self.budget_s)
        if until is not None:
            stop = stop | stop_when_event_set(until)
        retrying = Retrying(retry=retry_if_exception_type(StoreUnavailable), stop=stop,
                            wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S) + wait_random(0, JITTER_S),
                            sleep=until.wait if until is not None else time.sleep, reraise=True)
        then = f"trying again for up to {self.budget_s:g} s"
        result = retrying(self._attempt, what, then, call)
        self._recovered(what)
        return result

    def _attempt(self, what: str, then: str, call: Callable[[], T]) -> T:
        """One try; the first failure of an outage of `what` is logged."""
        try:
            return call()
        except StoreUnavailable as error:
            with self._lock:
                first = what not in self._outages
                self._outages.setdefault(what, time.monotonic())
            if first:
                LOGGER.warning("%s: %s; %s", what, error.message, then)
            raise

    def _recovered(self, what: str) -> None:
        with self._lock:
            began = self._outages.pop(what, None)
        if began is not None:
            LOGGER.info("%s: the job store answers again after %.1f s", what, time.monotonic() - began)
