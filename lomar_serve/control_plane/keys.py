"""The data plane's API keys, administered by the control plane: created (the secret returned once), listed and
revoked in the lifecycle store, and published to the gateways (lomar_serve/common/api_keys.py).

    keys = KeyService(store, repository / API_KEYS_FILE)
    record, key = keys.create(KeyRequest(name="ci", scopes=["infer"]))   # `key` is never stored or shown again
    keys.revoke(record.id)                                               # every gateway refuses it within seconds

The store is written first, then the file: a crash or a full disk between the two leaves the store ahead, and the
reconcile loop publishes again on its next pass (Reconciler's `publish_keys` step: `reconcile`), so the file
converges on the store whatever happens. The same pass revokes the key a worker got for an ingest job
(lomar_serve/jobs/ingest.py `job_key_name`) once that job no longer runs: the worker revokes it itself when the
job's stage ends, but not when it was killed.
"""
from __future__ import annotations

import logging
from pathlib import Path

from lomar_serve.common.api_keys import KeyGrant, new_key, publish_grants
from lomar_serve.control_plane.schemas import KeyRequest
from lomar_serve.jobs.errors import JobNotFound
from lomar_serve.jobs.ingest import key_job
from lomar_serve.jobs.store import KeyRecord, LifecycleStore

LOGGER = logging.getLogger(__name__)


class KeyService:
    def __init__(self, store: LifecycleStore, published: Path) -> None:
        self.store = store
        self.published = published

    def create(self, request: KeyRequest) -> tuple[KeyRecord, str]:
        key_id, key, digest = new_key()
        record = self.store.create_key(KeyGrant(key_id, request.name, tuple(request.scopes), digest,
                                                request.rate_per_minute, request.max_collections))
        LOGGER.info("API key %s (%s) created with scopes %s", key_id, request.name, ", ".join(request.scopes))
        self._publish_now()
        return record, key

    def list(self) -> list[KeyRecord]:
        return self.store.keys()

    def revoke(self, key_id: str) -> KeyRecord:
        record = self.store.revoke_key(key_id)
        LOGGER.info("API key %s (%s) revoked", key_id, record.name)
        self._publish_now()
        return record

    def reconcile(self) -> list[str]:
        """The reconcile loop's step: revoke the keys of ingest jobs that no longer run, publish; what changed."""
        return [*self.revoke_finished_job_keys(), *self.publish()]

    def revoke_finished_job_keys(self) -> list[str]:
        """Revoke each active key made for an ingest job that is not running (or no longer exists)."""
        revoked = []
        for record in self.store.keys():
            job_id = key_job(record.name)
            if record.revoked_at is not None or job_id is None:
                continue
            try:
                running = self.store.get_job(job_id).state == "running"
            except JobNotFound:
                running = False
            if not running:
                self.store.revoke_key(record.id)
                LOGGER.info("API key %s (%s) revoked: its ingest job no longer runs", record.id, record.name)
                revoked.append(f"API key {record.id} of ingest job {job_id} revoked")
        return revoked

    def publish(self) -> list[str]:
        """Publish the store's active keys where the gateways read them; what changed (for the reconcile log)."""
        grants = self.store.active_grants()
        if publish_grants(self.published, grants):
            return [f"API keys published: {len(grants)} active"]
        return []

    def _publish_now(self) -> None:
        try:
            self.publish()
        except OSError as error:  # the store has it; the reconcile loop publishes it when the disk allows
            LOGGER.error("API keys not published to %s (%s); the reconcile loop tries again", self.published, error)
