"""The README's "Retrain, deploy, roll back" walk, read from README.md itself: its `lomar data synth` and its two
`lomar jobs submit` commands, run by a worker (real training, export and verification processes). Each version the
walk makes must score at least twice chance on the walk's own validation images, as the verification stage scores
it (its ONNX file, run as served); the second job continues the first job's model, head included."""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from lomar_serve.clients.admin_cli import build_parser, submit_request
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.spec import JobRequest
from lomar_serve.jobs.store import STORE_FILE, JobRecord, open_store
from lomar_serve.worker.runner import JobSettings, Worker
from tests.lomar_serve.control_plane.conftest import wait_for_job
from training.data.cli import main as data_main

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
README = Path(__file__).resolve().parents[3] / "README.md"
SECTION = "## Retrain, deploy, roll back"


def walk_commands() -> list[list[str]]:
    """The `lomar ...` commands of the walk's first code block, continuation lines joined, comments dropped."""
    text = README.read_text()
    block = text[text.index(SECTION):].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        if line.startswith("lomar "):
            commands.append(shlex.split(line, comments=True)[1:])
    return commands


@pytest.fixture()
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(open_store(tmp_path / "jobs" / STORE_FILE), QueueSettings(jobs_dir=tmp_path / "jobs"))
    queue.start()
    yield queue
    queue.stop()


@pytest.fixture()
def worker(queue: JobQueue, tmp_path: Path) -> Iterator[Worker]:
    (tmp_path / "repo").mkdir()
    worker = Worker(queue.store, JobSettings(jobs_dir=tmp_path / "jobs", model_repository=tmp_path / "repo",
                                             poll_interval_s=0.5, heartbeat_interval_s=1.0), "walk")
    worker.start()
    yield worker
    worker.stop()


def run_job(queue: JobQueue, argv: list[str], data_root: Path, earlier: JobRecord | None) -> JobRecord:
    """`lomar jobs submit ...` of the README, as the control plane would queue it; its record once it ended."""
    args = build_parser().parse_args([word.replace("JOB_ID", earlier.id if earlier else "JOB_ID") for word in argv])
    plan = JobRequest.model_validate(submit_request(args)).plan(DataRoots.of([data_root]), queue.settings.jobs_dir)
    job = queue.submit(plan)
    record = wait_for_job(queue, job.id, lambda r: r.state not in ("queued", "running"), timeout_s=840)
    assert record.state == "succeeded", queue.describe(job.id, 8000)["log_tail"]
    return record


def test_the_readme_walk_leaves_models_clearly_better_than_chance(queue: JobQueue, worker: Worker,
                                                                  tmp_path: Path) -> None:
    commands = walk_commands()
    synth = next(c for c in commands if c[:2] == ["data", "synth"])
    submits = [c[1:] for c in commands if c[:2] == ["jobs", "submit"]]
    assert len(submits) == 2 and "--from-job" in submits[1], commands
    data_root = tmp_path / "data"
    out = synth[synth.index("--out") + 1]
    assert out.startswith("$LOMAR_DATA_ROOTS/"), "the walk writes its data into the data root"
    synth[synth.index("--out") + 1] = str(data_root / out.removeprefix("$LOMAR_DATA_ROOTS/"))
    assert data_main(synth[1:]) == 0
    classes = int(synth[synth.index("--classes") + 1])
    chance = 100.0 / classes

    first = run_job(queue, submits[0], data_root, None)
    second = run_job(queue, submits[1], data_root, first)
    for record in (first, second):
        verification = record.metrics["verification"]
        assert verification["metric"] == "top1" and verification["count"] == classes * int(
            synth[synth.index("--val-per-class") + 1])
        assert verification["value"] >= 2 * chance, (record.model_version, verification)
    assert (first.model_version, second.model_version) == ("1", "2")
    # version 2 was scored beside the serving version 1 on the same images
    assert second.metrics["verification"]["baseline"]["version"] == "1"
    log = Path(second.log_path).read_text()
    assert "continuing the fine-tuned model" in log and "head included" in log
    assert "newly initialised: nothing" in log
    assert "UserWarning" not in log and "worker processes in total" not in log, "warnings in the job log"
    print(f"README walk: top-1 version 1 {first.metrics['verification']['value']:.1f} %, version 2 "
          f"{second.metrics['verification']['value']:.1f} % on {first.metrics['verification']['count']} images "
          f"(chance {chance:.0f} %)")
