"""Request and response bodies of the gateway's public routes (pydantic, so OpenAPI documents every one).

Only pydantic here (no FastAPI): the Python client (lomar_serve/clients/gateway.py) parses answers with the same models.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from contracts.collections import OnDuplicate


# Upper bound of `top_k` in the schema; a top_k above the model's class count returns every class.
MAX_TOP_K = 100_000
# The example image of the OpenAPI document (/docs): a 16x16 red/green checkerboard PNG.
EXAMPLE_IMAGE = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAFUlEQVR42mNg+E9jyDBqw6gNQ8YG"
                 "ANlXfpDfjE6XAAAAAElFTkSuQmCC")


# Names or sha256 digests one image listing filters on at most: its URL stays a few KiB (uvicorn refuses request
# lines past 16 KiB, with a body no client can parse).
MAX_LISTING_FILTERS = 100
ON_DUPLICATE: tuple[OnDuplicate, ...] = get_args(OnDuplicate)  # what an add may do with known bytes (clients' list)

# The images of every JSON body that carries some (classify, embed, reconstruct, collections' adds and searches):
# one entry per image, never a URL.
IMAGES_DOC = "one entry per image: a data URI (`data:image/jpeg;base64,...`) or plain base64 of the file's bytes"
Images = Annotated[list[str], Field(min_length=1, description=IMAGES_DOC)]


class ImagesRequest(BaseModel):
    """JSON body of /v1/classify, /v1/embed and /v1/reconstruct (the images are never fetched from URLs)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE]}]})

    images: Images


class Label(BaseModel):
    label: str
    index: int = Field(ge=0, description="the class index (logit position)")
    score: float = Field(ge=0.0, le=1.0, description="softmax probability")


class Labels(BaseModel):
    labels: list[Label] = Field(description="best first; min(top_k, classes) entries")


class ClassifyResponse(BaseModel):
    model: str
    model_version: str
    results: list[Labels] = Field(description="one per image, in upload order")


class Embedding(BaseModel):
    embedding: list[float]


class EmbedResponse(BaseModel):
    model: str
    model_version: str
    dim: int = Field(ge=1, description="length of each vector")
    normalized: bool = Field(description="vectors scaled to unit L2 norm")
    results: list[Embedding] = Field(description="one per image, in upload order")


class ReconstructionImages(BaseModel):
    """Base64 PNGs of one image's reconstruction."""

    strip: str = Field(description="original | masked | reconstruction | pasted, side by side")
    original: str
    masked: str
    reconstruction: str
    pasted: str = Field(description="the reconstruction with the visible patches pasted back")


class ReconstructResponse(BaseModel):
    model: str
    model_version: str
    mask_ratio: float
    seed: int
    hidden_patches: int = Field(ge=0)
    results: list[ReconstructionImages] = Field(description="one per image, in upload order")


class ModelVersion(BaseModel):
    version: str
    state: str = Field(description="Triton's state: READY, UNAVAILABLE, LOADING...")
    reason: str = ""
    model_card: dict[str, Any] | None = None
    runs_on: list[str] | None = Field(None, description=(
        "a READY version: what it runs on, ONNX Runtime execution providers (CUDAExecutionProvider, "
        "CPUExecutionProvider) or TensorRT. A version configured for a GPU that cannot run there never becomes "
        "READY: its reason says why"))


class ModelInfo(BaseModel):
    """One model of the repository; kind and sizes are present once a version is ready."""

    name: str
    serving_version: str | None
    versions: list[ModelVersion]
    kind: Literal["classifier", "reconstructor"] | None = None
    image_size: list[int] | None = None
    max_batch_size: int | None = None
    num_classes: int | None = None
    labels: list[str] | None = Field(None, description="a classifier's classes, one per logit: the only answers it "
                                                       "can give")
    embedding_dim: int | None = None
    patch_size: int | None = None
    grid: list[int] | None = None
    error: str | None = Field(None, description="why a ready model cannot be used by the gateway")


class ModelsResponse(BaseModel):
    default_classifier: str
    default_reconstructor: str
    models: list[ModelInfo]


class RequestLimits(BaseModel):
    """What one request may carry (the gateway's settings); a request past them is a 413. Clients that split work
    into requests (the CLI's and LomarClient's ingest of folders) read them here."""

    max_images: int = Field(ge=1, description="images per request (LOMAR_MAX_IMAGES)")
    max_upload_bytes: int = Field(ge=1, description="bytes of one request body (LOMAR_MAX_UPLOAD_BYTES)")
    max_pixels: int = Field(ge=1, description="width x height of one image (LOMAR_MAX_PIXELS)")
    max_top_k: int = Field(ge=1, description="hits or labels per query (LOMAR_MAX_TOP_K)")


class Readiness(BaseModel):
    status: Literal["ready"]
    models: dict[str, str] = Field(description="model name -> the version that serves: the default models and every "
                                               "model the repository publishes")
