"""Where one job keeps its files: its log, its training outputs, its verification result and evaluation report, all
inside JOBS_DIR/<id>/ (the control plane creates the folder, workers and their stages write into it), and where
JOBS_DIR is by default: in the user's data folder, outside any source tree."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contracts.checkpoints import LAST_CHECKPOINT, final_checkpoint

EVALUATION_DIR = "evaluation"  # the verification stage's report (lomar_serve/jobs/report.py) and its thumbnails
EVALUATION_FILE = "evaluation.json"
THUMBNAILS_DIR = "thumbnails"
INGEST_REPORT_FILE = "ingest.json"
# How a stopped job can go on ("{id}": the job's id).
RESUME_HINT = ("its log and checkpoints are kept: resume it (POST /v1/admin/jobs/{id}/resume, "
               "`lomar jobs resume {id}`) to continue from its last checkpoint")


def data_home(environ: Mapping[str, str] = os.environ) -> Path:
    """Where lomar keeps what it makes for a user, outside any source tree: $XDG_DATA_HOME/lomar, by default
    ~/.local/share/lomar (the XDG base directory rule)."""
    base = environ.get("XDG_DATA_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path(environ.get("HOME") or Path.home()) / ".local" / "share"
    return root / "lomar"


def default_jobs_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Job records, logs and outputs when LOMAR_JOBS_DIR is unset: DATA_HOME/jobs (`data_home`)."""
    return data_home(environ) / "jobs"


@dataclass(frozen=True)
class JobFiles:
    """Where one job keeps its files (all inside JOBS_DIR/<id>/)."""

    job_dir: Path

    @property
    def log(self) -> Path:
        return self.job_dir / "job.log"

    @property
    def train(self) -> Path:
        return self.job_dir / "train"

    @property
    def verification(self) -> Path:
        return self.job_dir / "verification.json"

    @property
    def evaluation_dir(self) -> Path:
        return self.job_dir / EVALUATION_DIR

    @property
    def evaluation(self) -> Path:
        """The evaluation report of the job's version and the serving one (lomar_serve/jobs/report.py)."""
        return self.evaluation_dir / EVALUATION_FILE

    @property
    def thumbnails(self) -> Path:
        return self.evaluation_dir / THUMBNAILS_DIR

    @property
    def ingest_report(self) -> Path:
        """An ingest job's whole report (every failed file), beside its log."""
        return self.job_dir / INGEST_REPORT_FILE

    @property
    def checkpoint(self) -> Path:
        """What gets exported: the best fine-tuned checkpoint, else the last one (pretraining keeps no best)."""
        return final_checkpoint(self.train) or self.train / LAST_CHECKPOINT
