"""An ingest job: a folder of images under the data roots added to an image collection by a worker, through a
gateway (which embeds them with the collection's model), with progress, resumable.

    POST /v1/admin/jobs {"kind": "ingest", "data_dir": "photos/2024", "collection": "photos", "create": true}

Each image is named by its path relative to the folder (`beach/IMG_0001.jpg`), as the client's bulk ingest names
it (`lomar collections add photos photos/2024/`), so a folder ingested either way, or again after a kill, adds
what is missing and nothing twice: images the collection holds under the same name with the same bytes are skipped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.collections import COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE, OnDuplicate
from contracts.model_repository import MODEL_NAME_PATTERN
from lomar_serve.jobs.paths import DataRoots

INGEST = "ingest"  # the job kind
INGEST_STAGE = "ingest"  # its one stage
JOB_KEY_PREFIX = "ingest-job-"  # the name of the gateway key a worker gets for a job: the prefix and the job's id
MAX_FAILURES_SHOWN = 20  # failed files kept in the job's record (the report file has them all)


def job_key_name(job_id: str) -> str:
    """The name of the API key a worker gets from the control plane for an ingest job."""
    return JOB_KEY_PREFIX + job_id


def key_job(key_name: str) -> str | None:
    """The id of the ingest job an API key was made for (None: not such a key)."""
    return key_name[len(JOB_KEY_PREFIX):] if key_name.startswith(JOB_KEY_PREFIX) else None


class IngestRequest(BaseModel):
    """POST /v1/admin/jobs body of an ingest job."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ingest"]
    data_dir: str = Field(description="the folder of images (searched recursively, hidden folders skipped), inside "
                                      "a data root")
    collection: str = Field(pattern=COLLECTION_NAME_PATTERN, description=f"the collection ({COLLECTION_NAME_RULE})")
    create: bool = Field(False, description="create the collection when it does not exist (else the job fails)")
    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN,
                              description="the embedding model of a collection the job creates (default: the "
                                          "gateway's)")
    on_duplicate: OnDuplicate = Field("skip", description="an image whose bytes the collection holds under another "
                                                          "name: skip (default), replace it, or add it again")

    def plan(self, roots: DataRoots) -> IngestPlan:
        """Resolve the folder inside the data roots; raises PathNotAllowed."""
        folder = roots.resolve(self.data_dir, kind="data_dir", must_be_dir=True)
        return IngestPlan(data_dir=str(folder), collection=self.collection, create=self.create, model=self.model,
                          on_duplicate=self.on_duplicate, data_roots=tuple(str(root) for root in roots.roots))


@dataclass(frozen=True)
class IngestPlan:
    """A validated ingest job, stored as its params (a resumed job runs it again: what is in is skipped)."""

    data_dir: str
    collection: str
    create: bool = False
    model: str | None = None
    on_duplicate: str = "skip"
    data_roots: tuple[str, ...] = ()  # every image must resolve inside them (a symlink may not lead out)
    kind: str = INGEST

    @property
    def model_name(self) -> str:
        """What the job's record names as its model: the model of a collection it creates, else ''."""
        return self.model or ""

    @property
    def folder(self) -> Path:
        return Path(self.data_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IngestPlan:
        return cls(**{**values, "data_roots": tuple(values.get("data_roots", ()))})  # JSON gives a list


def ingest_figures(files: int, done: int, added: int, skipped: int, failed: int, elapsed_s: float) -> dict[str, Any]:
    """What an ingest job's record shows while it runs and after (metrics["ingest"]): counts, images/s over the
    files handled so far, and the seconds left at that pace."""
    rate = done / elapsed_s if elapsed_s > 0 and done else None
    return {"files": files, "done": done, "added": added, "skipped": skipped, "failed": failed,
            "img_per_s": round(rate, 1) if rate else None,
            "eta_s": round((files - done) / rate, 1) if rate else None}
