"""The control plane's Prometheus metrics: jobs by state and the durations of jobs that ended (read from the store
at each scrape, each job observed once), deploy and rollback durations by outcome; /metrics needs no token."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lomar_serve.control_plane import routes
from lomar_serve.control_plane.metrics import ControlPlaneMetrics
from lomar_serve.jobs.errors import StoreUnavailable
from lomar_serve.jobs.spec import JobRequest
from tests.lomar_serve.control_plane.conftest import AUTH, JOB, admin_app


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")  # no token: Prometheus scrapes it as it does the gateway's
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples_of(response.text)


def test_jobs_by_state_and_job_and_deploy_durations(tmp_path: Path) -> None:
    app, lifecycle = admin_app(tmp_path)
    app.include_router(routes.metrics_router)
    client = TestClient(app)
    before = scrape(client)
    assert before[("lomar_jobs", (("state", "queued"),))] == 0 and before[("lomar_job_store_up", ())] == 1

    done, waiting = (client.post("/v1/admin/jobs", json=JOB, headers=AUTH).json()["id"] for _ in range(2))
    store = lifecycle.store
    store.claim_next("w1")
    store.transition(done, ("running",), "succeeded", "done")
    first = scrape(client)
    assert first[("lomar_jobs", (("state", "succeeded"),))] == 1
    assert first[("lomar_jobs", (("state", "queued"),))] == 1 and first[("lomar_jobs", (("state", "running"),))] == 0
    ended = (("kind", "finetune"), ("state", "succeeded"))
    assert first[("lomar_job_duration_seconds_count", ended)] == 1
    record = store.get_job(done)
    assert first[("lomar_job_duration_seconds_sum", ended)] == record.updated_at - record.created_at
    client.post(f"/v1/admin/jobs/{waiting}/cancel", headers=AUTH)
    second = scrape(client)  # each ended job is observed once, however often it is scraped
    assert second[("lomar_job_duration_seconds_count", ended)] == 1
    assert second[("lomar_job_duration_seconds_count", (("kind", "finetune"), ("state", "cancelled")))] == 1

    assert client.post("/v1/admin/models/m/deploy", json={"version": 3}, headers=AUTH).status_code == 404
    assert client.post("/v1/admin/models/m/rollback", headers=AUTH).status_code == 409
    switches = scrape(client)
    assert switches[("lomar_deploy_duration_seconds_count", (("action", "deploy"), ("outcome", "failed")))] == 1
    assert switches[("lomar_deploy_duration_seconds_count", (("action", "rollback"), ("outcome", "failed")))] == 1


def test_a_job_that_ended_before_the_control_plane_started_is_not_observed(tmp_path: Path) -> None:
    _, lifecycle = admin_app(tmp_path)
    job = lifecycle.jobs.submit(JobRequest(**JOB).plan(lifecycle.roots, lifecycle.jobs_dir))
    lifecycle.jobs.cancel(job.id)
    restarted = ControlPlaneMetrics(lifecycle.store)  # a control plane started after the job ended
    samples = samples_of(restarted.render().decode())
    assert samples[("lomar_jobs", (("state", "cancelled"),))] == 1
    assert ("lomar_job_duration_seconds_count", (("kind", "finetune"), ("state", "cancelled"))) not in samples


def test_a_store_that_is_away_is_a_gauge_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, lifecycle = admin_app(tmp_path)

    def away() -> dict[str, int]:
        raise StoreUnavailable("the job store is not reachable")

    monkeypatch.setattr(lifecycle.store, "job_counts", away)
    samples = samples_of(lifecycle.metrics.render().decode())
    assert samples[("lomar_job_store_up", ())] == 0
