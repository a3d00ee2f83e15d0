"""`lomar jobs` against a live admin API (in-process uvicorn, the lifecycle in a temporary folder): `list` shows
progress and ETA, `follow` draws progress until the job ends (stage and epoch lines, loss, top-1, ETA) while a
stand-in worker moves the job through its stages in the store."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from lomar_serve.cli import main as lomar
from lomar_serve.clients.admin import AdminClient
from lomar_serve.clients.admin_cli import duration, follow
from lomar_serve.control_plane.service import Lifecycle
from tests.lomar_serve.control_plane.conftest import TOKEN, admin_app
from tests.lomar_serve.processes import free_port, served_on_a_thread


@pytest.fixture()
def control_plane(tmp_path: Path) -> Iterator[tuple[str, Lifecycle]]:
    app, lifecycle = admin_app(tmp_path)
    port = free_port()
    with served_on_a_thread(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}", lifecycle


def stand_in_worker(lifecycle: Lifecycle, job_id: str) -> None:
    """What a worker writes while it runs a job: a claim, training figures per epoch, the later stages, the end."""
    store = lifecycle.store
    store.claim_next("w1")
    for epoch, (loss, eta) in enumerate([(1.25, 75.0), (0.5, 5.0)]):
        store.update_job(job_id, stage="train", progress=0.4 * (epoch + 1), metrics={"training": {
            "epochs": 2, "epochs_done": epoch + 1, "train_loss": loss, "lr": 3e-4, "img_per_s": 20.0,
            "val_top1": 50.0 + 40 * epoch, "eta_s": eta}})
        time.sleep(0.5)
    for stage, progress in (("export", 0.8), ("verify", 0.9)):
        store.update_job(job_id, stage=stage, progress=progress)
        with open(store.get_job(job_id).log_path, "a") as log:
            log.write(f"== stage {stage} ==\n")
        time.sleep(0.3)
    store.update_job(job_id, stage="done", progress=1.0, model_version="1",
                     metrics={"verification": {"metric": "top1", "value": 95.0, "count": 40}})
    store.transition(job_id, ("running",), "succeeded", "exported version 1 of lomar_classifier")


def test_list_and_follow_show_progress_loss_and_eta(control_plane: tuple[str, Lifecycle],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url, lifecycle = control_plane
    connection = ["--url", url, "--token", TOKEN]
    assert lomar(["jobs", "submit", "--data-dir", "set", "--model", "lomar_tiny_patch16", "--epochs", "2",
                  "--option", "blr=5e-3", *connection]) == 0
    job_id = capsys.readouterr().out.split()[1]
    assert lifecycle.store.get_job(job_id).params["options"] == {"blr": 0.005}  # 5e-3 is a number, not a string
    lifecycle.store.claim_next("w0")
    lifecycle.store.update_job(job_id, stage="train", progress=0.2, metrics={"training": {"eta_s": 125.0}})
    assert lomar(["jobs", "list", *connection]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(job_id) and "running" in line and " 20%" in line and "ETA 2m05s" in line

    lifecycle.store.transition(job_id, ("running",), "interrupted", "stopped")
    lifecycle.store.transition(job_id, ("interrupted",), "queued", "again")
    worker = threading.Thread(target=stand_in_worker, args=(lifecycle, job_id))
    worker.start()
    client = AdminClient(url, TOKEN)
    try:
        assert follow(client, job_id, poll_s=0.1) == 0
    finally:
        client.close()
        worker.join(30)
    lines = capsys.readouterr().out.splitlines()
    assert any("train  epoch 1/2  loss 1.2500" in x and "val top-1 50.0%" in x and "ETA 1m15s" in x for x in lines)
    assert any("epoch 2/2  loss 0.5000" in x and "ETA 5s" in x for x in lines), lines
    assert any(x.endswith(": export") for x in lines) and any(x.endswith(": verify") for x in lines)
    outcome = f"job {job_id}: succeeded: exported version 1 of lomar_classifier (top1 95 on 40 images)"
    assert lines[-1] == outcome and not any(x.endswith(": succeeded") for x in lines)
    assert lomar(["jobs", "follow", job_id, "--log", *connection]) == 0  # the log instead of the bar
    assert capsys.readouterr().out == f"== stage export ==\n== stage verify ==\n{outcome}\n"


def test_durations() -> None:
    assert [duration(s) for s in (None, 4.4, 65, 3600 * 2 + 7 * 60)] == ["-", "4s", "1m05s", "2h07m"]
