"""The gateway's use cases, free of HTTP: decode the uploads, call Triton once, shape the answer.

Routes parse requests and format responses; everything else happens here, so it can be tested and reused
(the web page, the CLI client and the benchmark all go through the same HTTP routes into these methods).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from contracts.preprocessing import DecodeOptions
from contracts.reconstruction_mask import sample_mask
from lomar_serve.common.errors import InvalidParameter, PayloadTooLarge, ServiceError
from lomar_serve.common.rollouts import PublishedRollout
from lomar_serve.common.triton_index import ready_versions
from lomar_serve.gateway.agreement import softmax
from lomar_serve.gateway.catalog import ModelCatalog, ModelSpec
from lomar_serve.gateway.decode_budget import PixelBudget, decode_batch_within
from lomar_serve.gateway.errors import InferenceFailed, ModelNotFound, TritonUnavailable
from lomar_serve.gateway.inference import InferenceBackend, InferResult
from lomar_serve.gateway.metrics import GatewayMetrics
from lomar_serve.gateway.reconstruction import Panels, compose_panels
from lomar_serve.gateway.rollout_traffic import FAILURES, GuardRecorder, RolloutTraffic
from lomar_serve.gateway.server_timing import DECODE, INFER, record
from lomar_serve.gateway.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Reconstructions:
    """The answer of one reconstruct request."""

    model: str
    model_version: str
    mask_ratio: float
    seed: int
    hidden_patches: int
    panels: list[Panels]  # one per image


class Gateway:
    """Classify, embed and reconstruct uploaded images with models served by Triton."""

    def __init__(self, settings: Settings, backend: InferenceBackend, metrics: GatewayMetrics, *,
                 version_for: Callable[[str], str | None] = lambda name: None,
                 published: Callable[[], dict[str, str]] = dict,
                 rollout_for: Callable[[str], PublishedRollout | None] = lambda name: None) -> None:
        """
        Args:
            version_for: model name -> the version requests go to (lomar_serve/gateway/routing.py: the published one);
                None = Triton's version policy (the newest ready version).
            published: every model the repository publishes -> its version (routing's snapshot; {} without one):
                what readiness checks beyond the default models.
            rollout_for: model name -> the canary or shadow rollout its requests follow (routing.py; None: none).
        """
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.version_for = version_for
        self.published = published
        self.repository = settings.model_repository if settings.model_repository.is_dir() else None
        self.catalog = ModelCatalog(backend, self.repository, retry_after_s=settings.retry_after_s,
                                    version_for=version_for)
        self.rollouts = RolloutTraffic(rollout_for, GuardRecorder(self.repository, metrics,
                                                                  interval_s=settings.rollout_report_interval_s),
                                       self.labels_of, max_comparisons=settings.rollout_max_comparisons)
        self._labels: dict[tuple[str, str], tuple[str, ...]] = {}  # (model, version) -> its labels
        self._executor = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="lomar-decode")
        self._decode_budget = PixelBudget(settings.decode_budget_pixels)

    async def close(self) -> None:
        await self.rollouts.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.backend.close()

    # -- use cases -----------------------------------------------------------------------------------------
    async def classify(self, blobs: Sequence[bytes], model: str | None, top_k: int,
                       version: str | None = None) -> dict[str, Any]:
        """Top-k labels with softmax scores for each image.

        Args:
            version: answer with exactly this version (None: the serving one, or as a rollout splits requests).
        """
        name = model or self.settings.default_classifier
        spec = await self.catalog.get(name, "classifier")
        if top_k < 1:
            raise InvalidParameter(f"top_k must be at least 1, got {top_k}")
        top_k = min(top_k, len(spec.labels), self.settings.max_top_k)  # more than the classes: all of them
        images = await self.decode_inputs("classify", blobs, spec)
        result = await self._answer(spec, {"image": images}, ["logits"], version)
        probabilities = softmax(result.outputs["logits"])  # (N, C)
        labels = self.labels_of(spec, result.model_version)  # the labels of the version that answered
        confidence = self.metrics.version_confidence.labels(name, result.model_version)
        results = []
        for row in probabilities:
            best = np.argsort(-row, kind="stable")[:top_k]
            confidence.observe(float(row[best[0]]))
            results.append({"labels": [{"label": labels[i], "index": int(i), "score": float(row[i])}
                                       for i in best]})
        return {"model": name, "model_version": result.model_version, "results": results}

    async def embed(self, blobs: Sequence[bytes], model: str | None, normalize: bool,
                    version: str | None = None) -> dict[str, Any]:
        """The pooled feature of each image, unit-norm unless `normalize` is False."""
        name = model or self.settings.default_classifier
        spec = await self.catalog.get(name, "classifier")
        images = await self.decode_inputs("embed", blobs, spec)
        result = await self._answer(spec, {"image": images}, ["embedding"], version)
        embeddings = result.outputs["embedding"].astype(np.float64)  # (N, D)
        if normalize:
            embeddings = unit_rows(embeddings)
        return {"model": name, "model_version": result.model_version, "dim": int(embeddings.shape[1]),
                "normalized": normalize,
                "results": [{"embedding": [float(v) for v in row]} for row in embeddings]}

    async def reconstruct(self, blobs: Sequence[bytes], model: str | None, mask_ratio: float,
                          seed: int | None, version: str | None = None) -> Reconstructions:
        """Hide a random `mask_ratio` of the patches (the same mask for every image of the request) and
        reconstruct them."""
        name = model or self.settings.default_reconstructor
        if not 0.0 <= mask_ratio <= 1.0:
            raise InvalidParameter(f"mask_ratio must be between 0 and 1, got {mask_ratio}")
        spec = await self.catalog.get(name, "reconstructor")
        seed = secrets.randbelow(2**31) if seed is None else seed
        images = await self.decode_inputs("reconstruct", blobs, spec)
        mask = sample_mask(spec.grid, mask_ratio, seed)  # (h, w)
        masks = np.broadcast_to(mask, (len(images), *spec.grid)).copy()  # (N, h, w)
        result = await self._answer(spec, {"image": images, "mask": masks}, ["reconstruction"], version)
        panels = [compose_panels(image, mask, predicted)
                  for image, predicted in zip(images, result.outputs["reconstruction"])]
        return Reconstructions(model=name, model_version=result.model_version, mask_ratio=mask_ratio,
                               seed=seed, hidden_patches=int(mask.sum()), panels=panels)

    # -- steps ---------------------------------------------------------------------------------------------
    async def decode_inputs(self, endpoint: str, blobs: Sequence[bytes], spec: ModelSpec) -> np.ndarray:
        """Uploads -> (N, 3, H, W) uint8 inputs of `spec`'s model: the one decoding of every endpoint (and of
        the similar-image search)."""
        if len(blobs) > self.settings.max_images:
            raise PayloadTooLarge(f"{len(blobs)} images in one request; the limit is {self.settings.max_images}")
        options = decode_options(self.settings, spec.image_size)
        start = time.perf_counter()
        images = await decode_batch_within(blobs, options, self._executor, self._decode_budget)
        elapsed = time.perf_counter() - start
        self.metrics.decode.labels(endpoint).observe(elapsed)
        record(DECODE, elapsed)
        self.metrics.batch_size.labels(endpoint).observe(len(images))
        return images

    async def _answer(self, spec: ModelSpec, inputs: dict[str, np.ndarray], outputs: list[str],
                      version: str | None) -> InferResult:
        """The answer of `version` when the client pinned one; else of the version routing and a rollout choose."""
        if version is None:
            return await self.rollouts.answer(spec, inputs, outputs, self._infer)
        if self.repository is not None and not (self.repository / spec.name / version).is_dir():
            raise ModelNotFound(f"model {spec.name!r} has no version {version}")
        try:
            return await self._infer(spec, inputs, outputs, version=version)
        except TritonUnavailable:
            loaded = ready_versions(await self.backend.repository_index(), spec.name)
            if version not in loaded:
                raise ModelNotFound(f"version {version} of model {spec.name!r} is not served (loaded: "
                                    f"{', '.join(loaded) or 'none'})") from None
            raise

    def labels_of(self, spec: ModelSpec, version: str) -> tuple[str, ...]:
        """The labels of `version` of a classifier: its model card's classes (each version its own), else the
        model's."""
        if spec.kind != "classifier" or not version or version == spec.version:
            return spec.labels
        labels = self._labels.get((spec.name, version))
        if labels is None:
            card = self.catalog.model_card(spec.name, version)
            labels = card.classes if card is not None and len(card.classes) == len(spec.labels) else spec.labels
            self._labels[(spec.name, version)] = labels
        return labels

    async def _infer(self, spec: ModelSpec, inputs: dict[str, np.ndarray], outputs: list[str], *,
                     version: str | None = None, role: str = "answer") -> InferResult:
        """One Triton request, or one per `max_batch_size` images when the upload is bigger than that.

        Args:
            version: this version of the model; None: the routed one (or Triton's policy without routing).
            role: answer (a client's answer) or compare (a rollout's comparison): a label of the version metrics.
        """
        count = len(next(iter(inputs.values())))
        step = spec.max_batch_size
        if version is None:
            version = spec.version if self.version_for(spec.name) else ""
        start = time.perf_counter()
        try:
            parts = await asyncio.gather(*(
                self.backend.infer(spec.name, {k: v[i:i + step] for k, v in inputs.items()}, outputs, version=version)
                for i in range(0, count, step)))
        except ServiceError as error:
            outcome = "error" if isinstance(error, FAILURES) else "unavailable"
            self.metrics.version_calls.labels(spec.name, version or spec.version, role, outcome).inc()
            raise
        seconds = time.perf_counter() - start
        self.metrics.triton_latency.labels(spec.name).observe(seconds)
        record(INFER, seconds)
        answered = parts[-1].model_version or version or spec.version
        self.metrics.version_calls.labels(spec.name, answered, role, "ok").inc()
        self.metrics.version_latency.labels(spec.name, answered).observe(seconds)
        if len(parts) == 1:
            return parts[0]
        return InferResult(outputs={k: np.concatenate([p.outputs[k] for p in parts]) for k in outputs},
                           model_version=parts[-1].model_version)

    # -- for the similar-image search (lomar_serve/search) ------------------------------------------------------
    async def embed_inputs(self, spec: ModelSpec, images: np.ndarray, version: str) -> np.ndarray:
        """(N, 3, H, W) uint8 -> (N, D) float32 unit embeddings computed by exactly `version` of the model.

        Raises:
            InferenceFailed: Triton answered from another version; TritonUnavailable: that version is not loaded.
        """
        result = await self._infer(spec, {"image": images}, ["embedding"], version=version)
        if result.model_version and result.model_version != version:
            raise InferenceFailed(f"asked {spec.name} version {version}, Triton answered with "
                                  f"{result.model_version}")
        return unit_rows(result.outputs["embedding"].astype(np.float64)).astype(np.float32)

    async def offload(self, function: Callable[..., T], *args: Any) -> T:
        """Run CPU work (PNG encoding, hashing and encoding the inputs a collection stores) on the decode threads,
        off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


def decode_options(settings: Settings, size: tuple[int, int]) -> DecodeOptions:
    """How the gateway decodes uploads for a model of input `size` (H, W)."""
    return DecodeOptions(size=size, max_pixels=settings.max_pixels, min_side=settings.min_image_side)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) rows scaled to unit L2 norm (zero rows stay zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
