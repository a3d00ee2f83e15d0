"""The stage of an ingest job (lomar_serve/jobs/ingest.py): every image of a folder under the data roots added to a
collection through a gateway by the client's bulk ingest (lomar_serve/clients/ingest.py: requests within the
gateway's limits, two in flight, retries with backoff, resume by name and sha256). It runs in the worker's own
process: the gateway decodes and Triton embeds; the stage reads files and sends them.

The gateway's key, in this order: LOMAR_GATEWAY_API_KEY; else, with a control plane, a key of the job's own
(`ingest-job-<id>`, scopes collections:read and collections:write) created when the stage starts and revoked when it
ends (one left by a killed worker is revoked by the control plane's reconcile loop once the job no longer runs,
control_plane/keys.py); else none (the gateway must open collections:write, LOMAR_OPEN_SCOPES).

    access = GatewayAccess("http://127.0.0.1:8000", admin=AdminClient(control_plane_url, token=...))
    with access.client(job_id) as client:
        figures = run_ingest(plan, client, job_files, on_figures=print, stop=lambda: False)
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from contracts.datasets import OutsideDataRoots, resolve_roots
from lomar_serve.clients.admin import AdminClient, AdminError
from lomar_serve.clients.errors import GatewayClientError
from lomar_serve.clients.gateway import LomarClient
from lomar_serve.clients.ingest import IngestOptions, IngestProgress, folder_sources, ingest
from lomar_serve.jobs.errors import LifecycleError
from lomar_serve.jobs.files import JobFiles
from lomar_serve.jobs.ingest import MAX_FAILURES_SHOWN, IngestPlan, ingest_figures, job_key_name

LOGGER = logging.getLogger(__name__)
JOB_KEY_SCOPES = ("collections:read", "collections:write")
KEY_PUBLISH_WAIT_S = 30.0  # a new key reaches the gateways through the keys file they reload every second
REQUEST_TIMEOUT_S = 300.0  # one request of the ingest (a chunk of images) to the gateway
NO_GATEWAY = "ingest jobs need a gateway: set LOMAR_GATEWAY_URL on the worker (`lomar serve` sets its own)"


class IngestFailed(LifecycleError):
    """The ingest cannot go on: no gateway, a refused key, a missing collection, a refusal no retry helps."""


@dataclass(frozen=True)
class GatewayAccess:
    """How a worker reaches the gateway for ingest jobs (see the module's docstring)."""

    url: str
    api_key: str | None = None  # LOMAR_GATEWAY_API_KEY
    admin: AdminClient | None = None  # creates and revokes a job's own key when api_key is None
    publish_wait_s: float = KEY_PUBLISH_WAIT_S

    @contextmanager
    def client(self, job_id: str) -> Iterator[LomarClient]:
        """A client of the gateway with the job's key; a key made for the job is revoked on the way out."""
        key_id, api_key = None, self.api_key
        if api_key is None and self.admin is not None:
            key_id, api_key = self._job_key(job_id)
        try:
            with LomarClient(self.url, api_key=api_key, timeout_s=REQUEST_TIMEOUT_S) as client:
                if key_id is not None:
                    self._await_key(client)
                yield client
        finally:
            if key_id is not None:
                self._revoke(key_id)

    def _job_key(self, job_id: str) -> tuple[str, str]:
        """A new key for the job (its earlier ones revoked); (id, key)."""
        assert self.admin is not None
        name = job_key_name(job_id)
        try:
            for key in self.admin.keys():
                if key["name"] == name and key.get("revoked_at") is None:
                    self._revoke(key["id"])
            created = self.admin.create_key({"name": name, "scopes": list(JOB_KEY_SCOPES)})
        except (AdminError, httpx.HTTPError) as error:
            raise IngestFailed(f"the control plane gave the job no API key for the gateway: {error}") from error
        return created["id"], created["key"]

    def _await_key(self, client: LomarClient) -> None:
        """Wait until the gateway knows the new key (it refuses a key it does not know with 403)."""
        deadline = time.monotonic() + self.publish_wait_s
        while True:
            try:
                client.collections()
                return
            except (GatewayClientError, httpx.TransportError) as error:
                if isinstance(error, GatewayClientError) and error.status != 403:
                    raise IngestFailed(f"the gateway at {self.url} refused the job's key: {error}") from error
                if time.monotonic() > deadline:
                    raise IngestFailed(f"the gateway at {self.url} did not accept the job's API key within "
                                       f"{self.publish_wait_s:g} s: {error}") from error
            time.sleep(0.2)

    def _revoke(self, key_id: str) -> None:
        assert self.admin is not None
        try:
            self.admin.revoke_key(key_id)
        except (AdminError, httpx.HTTPError) as error:  # the next run of the job revokes it, by its name
            LOGGER.warning("the ingest job's API key %s could not be revoked: %s", key_id, error)


def run_ingest(plan: IngestPlan, client: LomarClient, files: JobFiles, *,
               on_figures: Callable[[dict[str, Any]], None], stop: Callable[[], bool]) -> dict[str, Any]:
    """Add the plan's folder to its collection through `client`; the final figures (jobs.ingest.ingest_figures, the
    collection's count, the first failures). The whole report is written to `files.ingest_report`.

    Raises:
        IngestFailed: see the class; clients.ingest.IngestStopped when `stop()` said so.
    """
    try:
        sources = folder_sources(plan.folder, resolve_roots(plan.data_roots) if plan.data_roots else None)
    except OutsideDataRoots as error:
        raise IngestFailed(str(error)) from None
    if not sources:
        raise IngestFailed(f"{plan.data_dir} holds no image")
    started = time.monotonic()

    def figures(progress: IngestProgress) -> dict[str, Any]:
        return ingest_figures(progress.files, progress.done, progress.added + progress.replaced, progress.skipped,
                              progress.failed, time.monotonic() - started)

    try:
        _ensure_collection(plan, client)
        report = ingest(client, plan.collection, sources, IngestOptions(
            on_duplicate=plan.on_duplicate, on_progress=lambda progress: on_figures(figures(progress)), stop=stop))
    except GatewayClientError as error:
        raise IngestFailed(f"the gateway refused: {error}") from error
    except httpx.TransportError as error:
        raise IngestFailed(f"the gateway at {client.url} cannot be reached: {error}") from error
    del report["ids"], report["names"]  # a million of each: the collection lists them
    files.ingest_report.write_text(json.dumps(report, indent=1))
    final = ingest_figures(report["files"], report["files"], report["added"] + report["replaced"], report["skipped"],
                           len(report["failed"]), time.monotonic() - started)
    return {**final, "collection": plan.collection, "count": report["count"],
            "failures": report["failed"][:MAX_FAILURES_SHOWN]}


def _ensure_collection(plan: IngestPlan, client: LomarClient) -> None:
    try:
        client.collection(plan.collection)
    except GatewayClientError as error:
        if error.status != 404:
            raise
        if not plan.create:
            raise IngestFailed(f"there is no collection {plan.collection!r} (create it, or submit the job with "
                               "`create`)") from None
        try:
            client.create_collection(plan.collection, model=plan.model)
        except GatewayClientError as race:
            if race.status != 409:  # created meanwhile: fine
                raise


def summary(figures: dict[str, Any]) -> str:
    """An ingest job's final message."""
    text = (f"added {figures['added']}, skipped {figures['skipped']} (already in), failed {figures['failed']} of "
            f"{figures['files']} images; collection {figures['collection']} holds {figures['count']}")
    if figures["failed"]:
        text += " (the failed files: metrics.ingest.failures, and the job's ingest.json)"
    return text
