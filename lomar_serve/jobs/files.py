"""Where one job keeps its files: its log, its training outputs and its verification report, all inside
JOBS_DIR/<id>/ (the control plane creates the folder, workers and their stages write into it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.checkpoints import LAST_CHECKPOINT, final_checkpoint

# How a stopped job can go on ("{id}": the job's id).
RESUME_HINT = ("its log and checkpoints are kept: resume it (POST /v1/admin/jobs/{id}/resume, "
               "`lomar jobs resume {id}`) to continue from its last checkpoint")


def default_jobs_dir(model_repository: Path) -> Path:
    """Job records and outputs live next to the model repository: REPO/../jobs."""
    return Path(model_repository).resolve().parent / "jobs"


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
    def checkpoint(self) -> Path:
        """What gets exported: the best fine-tuned checkpoint, else the last one (pretraining keeps no best)."""
        return final_checkpoint(self.train) or self.train / LAST_CHECKPOINT
