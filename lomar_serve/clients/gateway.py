"""A small Python client for the gateway (httpx), answering with the gateway's own response models.

    from lomar_serve.clients.gateway import LomarClient
    with LomarClient("http://127.0.0.1:8000") as client:
        client.classify(["cat.jpg"], top_k=3).results[0].labels[0].label
        client.embed(["cat.jpg", "dog.png"]).results[1].embedding
        open("strip.png", "wb").write(client.reconstruct_png(["cat.jpg"], mask_ratio=0.75, seed=0))
        client.create_collection("photos")
        client.add_images("photos", ["cat.jpg"], ids=["cat"], metadata=[{"kind": "pet"}])
        client.search("photos", "cat-small.jpg", top_k=3)["results"][0]["id"]
"""
from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from lomar_serve.clients.errors import GatewayClientError
from lomar_serve.common.settings import DEFAULT_GATEWAY_PORT
from lomar_serve.common.schemas import ErrorBody
from lomar_serve.gateway.api.schemas import (ClassifyResponse, EmbedResponse, ModelsResponse, ReconstructResponse,
                                             RequestLimits)

ImageInput = str | Path | bytes

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_GATEWAY_PORT}"


class LomarClient:
    """Classify, embed and reconstruct images through a running gateway."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        """`api_key`: a key from the control plane (`lomar keys create`), sent with every request."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LomarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def classify(self, images: Sequence[ImageInput], *, top_k: int = 5, model: str | None = None,
                 ) -> ClassifyResponse:
        """Top-k labels per image (all of them when top_k exceeds the model's classes)."""
        response = self._post("/v1/classify", images, {"top_k": top_k, "model": model})
        return ClassifyResponse.model_validate_json(response.content)

    def embed(self, images: Sequence[ImageInput], *, normalize: bool = True, model: str | None = None,
              ) -> EmbedResponse:
        """One vector per image, unit-norm unless `normalize` is False."""
        response = self._post("/v1/embed", images, {"normalize": str(normalize).lower(), "model": model})
        return EmbedResponse.model_validate_json(response.content)

    def reconstruct(self, images: Sequence[ImageInput], *, mask_ratio: float = 0.8, seed: int | None = None,
                    model: str | None = None) -> ReconstructResponse:
        """Base64 PNGs per image: strip, original, masked, reconstruction, pasted."""
        params = {"mask_ratio": mask_ratio, "seed": seed, "model": model, "format": "json"}
        return ReconstructResponse.model_validate_json(self._post("/v1/reconstruct", images, params).content)

    def reconstruct_png(self, images: Sequence[ImageInput], *, mask_ratio: float = 0.8, seed: int | None = None,
                        model: str | None = None) -> bytes:
        """One PNG: a strip original | masked | reconstruction | pasted per image, one under another."""
        params = {"mask_ratio": mask_ratio, "seed": seed, "model": model, "format": "png"}
        return self._post("/v1/reconstruct", images, params).content

    def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate_json(self._checked(self._http.get("/v1/models")).content)

    def limits(self) -> RequestLimits:
        """What one request may carry (the gateway's settings)."""
        return RequestLimits.model_validate_json(self._checked(self._http.get("/v1/limits")).content)

    # -- collections (similar-image search) -------------------------------------------------------------------
    def create_collection(self, name: str, *, model: str | None = None, dim: int | None = None) -> dict[str, Any]:
        body = {key: value for key, value in {"name": name, "model": model, "dim": dim}.items() if value is not None}
        return self._checked(self._http.post("/v1/collections", json=body)).json()

    def collections(self) -> dict[str, Any]:
        """{"collections": [{"name", "model", "model_version", "dim", "count", ...}]}."""
        return self._checked(self._http.get("/v1/collections")).json()

    def collection(self, name: str) -> dict[str, Any]:
        return self._checked(self._http.get(f"/v1/collections/{name}")).json()

    def delete_collection(self, name: str) -> dict[str, Any]:
        return self._checked(self._http.delete(f"/v1/collections/{name}")).json()

    def add_images(self, name: str, images: Sequence[ImageInput], *, ids: Sequence[str] | None = None,
                   names: Sequence[str] | None = None, metadata: Sequence[dict[str, Any]] | None = None,
                   upsert: bool = False, on_duplicate: str = "skip") -> dict[str, Any]:
        """One request: {"collection", "ids", "names", "added", "skipped", "replaced", "model_version", "count"};
        ids are generated when not given; names default to the files' names (bytes: the ids); images whose bytes
        the collection holds are skipped, replace that image, or are added again (`on_duplicate`)."""
        if isinstance(images, (str, Path, bytes)):
            raise TypeError("pass a sequence of images, e.g. [path]")
        given = list(names) if names else [None if isinstance(image, bytes) else Path(image).name for image in images]
        path = f"/v1/collections/{name}/images"
        if None in given:  # bytes without a name: JSON, where a missing name is the id (a part needs a file name)
            body: dict[str, Any] = {"images": [_base64(image) for image in images], "names": given,
                                    "upsert": upsert, "on_duplicate": on_duplicate}
            body.update({key: list(value) for key, value in (("ids", ids), ("metadata", metadata)) if value})
            return self._checked(self._http.post(path, json=body)).json()
        params: dict[str, Any] = {"upsert": str(upsert).lower(), "on_duplicate": on_duplicate}
        if ids:
            params["id"] = list(ids)
        if metadata:
            params["metadata"] = [json.dumps(item) for item in metadata]
        files = [("image", _file_part(index, image, file_name)) for index, (image, file_name)
                 in enumerate(zip(images, given))]
        return self._checked(self._http.post(path, params=params, files=files)).json()

    def images(self, name: str, *, offset: int = 0, limit: int = 100, names: Sequence[str] | None = None,
               hashes: Sequence[str] | None = None) -> dict[str, Any]:
        """{"collection", "images": [{"id", "name", "sha256", "metadata"}]}, oldest first; `names`, `hashes`: only
        images of these exact names, sha256 digests of their bytes."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if names:
            params["name"] = list(names)
        if hashes:
            params["sha256"] = list(hashes)
        return self._checked(self._http.get(f"/v1/collections/{name}/images", params=params)).json()

    def ingest(self, name: str, paths: Sequence[str | Path], *, metadata: dict[str, Any] | None = None,
               ids: Sequence[str] | None = None, upsert: bool = False, on_duplicate: str = "skip",
               chunk_images: int | None = None, concurrency: int = 2, retries: int = 5,
               progress: bool = False) -> dict[str, Any]:
        """Add every image of `paths` (files, folders searched recursively, glob patterns) in requests within the
        gateway's limits, skipping those already in (same name and bytes), each request retried on a transient
        failure; see lomar_serve/clients/ingest.py. Returns {"collection", "files", "added", "skipped", "replaced",
        "failed", "count", "ids", "names"}."""
        from lomar_serve.clients.ingest import IngestOptions, find_images, ingest

        options = IngestOptions(metadata=metadata, ids=ids, upsert=upsert, on_duplicate=on_duplicate,
                                chunk_images=chunk_images, concurrency=concurrency, retries=retries,
                                progress=progress)
        return ingest(self, name, find_images(paths), options)

    def delete_image(self, name: str, image_id: str) -> dict[str, Any]:
        return self._checked(self._http.delete(f"/v1/collections/{name}/images/{image_id}")).json()

    def search(self, name: str, image: ImageInput | None = None, *, image_id: str | None = None,
               vector: Sequence[float] | None = None, top_k: int = 10, threshold: float | None = None,
               where: dict[str, Any] | None = None) -> dict[str, Any]:
        """The nearest images to `image` (or to the indexed image `image_id`, or to `vector`):
        {"collection", "model", "model_version", "results": [{"id", "name", "score", "metadata"}]}."""
        params = {"top_k": top_k, "threshold": threshold, "id": image_id,
                  "filter": json.dumps(where) if where else None}
        path = f"/v1/collections/{name}/search"
        if vector is not None:
            body = {"vector": list(vector), "top_k": top_k, "threshold": threshold, "filter": where}
            return self._checked(self._http.post(path, json={k: v for k, v in body.items() if v is not None})).json()
        if image is None:
            query = {key: value for key, value in params.items() if value is not None}
            return self._checked(self._http.post(path, params=query)).json()
        return self._post(path, [image], params).json()

    def search_batch(self, name: str, images: Sequence[ImageInput] | None = None, *,
                     image_ids: Sequence[str] | None = None, vectors: Sequence[Sequence[float]] | None = None,
                     top_k: int = 10, threshold: float | None = None, where: dict[str, Any] | None = None,
                     ) -> dict[str, Any]:
        """Several queries of one kind in one request: {"collection", "model", "model_version", "results": [hits of
        each query, in order]}."""
        body: dict[str, Any] = {"top_k": top_k, "threshold": threshold, "filter": where}
        if images is not None:
            body["images"] = [_base64(image) for image in images]
        if image_ids is not None:
            body["ids"] = list(image_ids)
        if vectors is not None:
            body["vectors"] = [list(vector) for vector in vectors]
        return self._checked(self._http.post(f"/v1/collections/{name}/search/batch",
                                             json={k: v for k, v in body.items() if v is not None})).json()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _post(self, path: str, images: Sequence[ImageInput], params: dict[str, Any]) -> httpx.Response:
        if isinstance(images, (str, Path, bytes)):
            raise TypeError("pass a sequence of images, e.g. [path]")
        files = [("image", _file_part(index, image)) for index, image in enumerate(images)]
        query = {key: value for key, value in params.items() if value is not None}
        return self._checked(self._http.post(path, params=query, files=files))

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            error = ErrorBody.model_validate_json(response.content).error
        except ValueError:
            raise GatewayClientError(response.status_code, "http_error", response.text[:500]) from None
        raise GatewayClientError(response.status_code, error.code, error.message)


def _file_part(index: int, image: ImageInput, file_name: str | None = None) -> tuple[str, bytes, str]:
    """A multipart part: (file name, bytes, media type); `file_name` overrides the path's."""
    if isinstance(image, bytes):
        return file_name or f"image{index}", image, "application/octet-stream"
    path = Path(image)
    return (file_name or path.name, path.read_bytes(),
            mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def _base64(image: ImageInput) -> str:
    return base64.b64encode(image if isinstance(image, bytes) else Path(image).read_bytes()).decode("ascii")
