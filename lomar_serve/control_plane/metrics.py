"""Prometheus metrics of the control plane (GET /metrics, in routes.py; without the admin token, as the gateway's):
jobs by state, how long jobs take, how long deploys and rollbacks take. In a registry of their own (one per
Lifecycle).

Workers write job records, not the control plane, so the job figures are read from the store when /metrics is
scraped: the jobs in each state, and each job that ended since the previous scrape observed once in the duration
histogram (from its submission to its end, the queue wait included). A job that ended before this control plane
started is not observed: histograms count what happened while the process ran, as every Prometheus counter does.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest

from lomar_serve.jobs.errors import LifecycleError, StoreUnavailable, SwitchInProgress
from lomar_serve.jobs.store import FINISHED_STATES, JOB_STATES, LifecycleStore

LOGGER = logging.getLogger(__name__)
_JOB_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 3 * 3600.0, 12 * 3600.0, 48 * 3600.0)
_DEPLOY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
ENDED_JOBS_READ = 1000  # the newest ended jobs looked at per scrape (far more than end between two scrapes)


class ControlPlaneMetrics:
    """Jobs by state and durations (from the store, at each scrape), deploy and rollback durations (as they end)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, store: LifecycleStore) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge("lomar_jobs", "Retrain jobs by state", ["state"], registry=self.registry)
        self.store_up = Gauge("lomar_job_store_up", "1 when the job store answered the last scrape, else 0",
                              registry=self.registry)
        self.job_seconds = Histogram("lomar_job_duration_seconds", "Seconds from a job's submission to its end (queue "
                                     "wait included), by kind and final state", ["kind", "state"],
                                     buckets=_JOB_BUCKETS, registry=self.registry)
        self.switch_seconds = Histogram("lomar_deploy_duration_seconds", "Seconds a deploy or rollback took, by "
                                        "action and outcome (ok, failed, refused)", ["action", "outcome"],
                                        buckets=_DEPLOY_BUCKETS, registry=self.registry)
        self._since: float | None = None  # ended jobs updated after this (the store's clock) are yet to observe
        self._seen: set[tuple[str, float]] = set()  # (id, updated_at) observed at _since exactly
        try:
            self._since = store.now()
        except StoreUnavailable as error:
            LOGGER.warning("job durations are counted from the first scrape that reaches the store: %s",
                           error.message)

    @contextmanager
    def switch(self, action: str) -> Iterator[None]:
        """Time a deploy or rollback; its outcome from how it ends."""
        started, outcome = time.monotonic(), "ok"
        try:
            yield
        except SwitchInProgress:
            outcome = "refused"
            raise
        except LifecycleError:
            outcome = "failed"
            raise
        finally:
            self.switch_seconds.labels(action, outcome).observe(time.monotonic() - started)

    def refresh(self) -> None:
        """Jobs by state, and the durations of the jobs that ended since the previous refresh, from the store."""
        try:
            counts = self.store.job_counts()
            if self._since is None:
                self._since = self.store.now()
            ended = self.store.list_jobs(ENDED_JOBS_READ, FINISHED_STATES)
        except StoreUnavailable:
            self.store_up.set(0)
            return
        self.store_up.set(1)
        for state in JOB_STATES:
            self.jobs.labels(state).set(counts.get(state, 0))
        new = [job for job in ended if job.updated_at > self._since
               or job.updated_at == self._since and (job.id, job.updated_at) not in self._seen]
        for job in new:
            self.job_seconds.labels(job.kind, job.state).observe(max(0.0, job.updated_at - job.created_at))
        if new:
            self._since = max(job.updated_at for job in new)
            self._seen = {(job.id, job.updated_at) for job in new if job.updated_at == self._since}

    def render(self) -> bytes:
        """The exposition text for GET /metrics, the store read first."""
        self.refresh()
        return generate_latest(self.registry)

