"""Async calls to Triton over HTTP with binary tensors (tritonclient.http.aio), errors mapped to gateway errors.

One gateway request is one Triton request (the whole batch of images in it); Triton's dynamic batcher merges
requests from concurrent clients. JSON-encoded tensors are never sent: Triton 2.51's HTTP endpoint crashes on
large ones (docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
import numpy as np
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from lomar_serve.gateway.errors import InferenceFailed, ModelNotFound, TritonTimeout, TritonUnavailable

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class InferResult:
    """Outputs of one inference request and the model version that computed them."""

    outputs: dict[str, np.ndarray]  # output name -> array, batch dimension first
    model_version: str


class InferenceBackend(Protocol):
    """What the gateway needs from Triton. `TritonClient` is the real one; unit tests may pass a fake."""

    async def server_live(self) -> bool: ...

    async def repository_index(self) -> list[dict[str, str]]: ...

    async def model_config(self, name: str) -> dict[str, Any]: ...

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                    version: str = "", class_count: Mapping[str, int] | None = None) -> InferResult: ...

    async def close(self) -> None: ...


class TritonClient:
    """A Triton server's HTTP endpoint ("host:port"), used from one event loop."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, retry_after_s: int = 2,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        """
        Args:
            url: "host:port" of Triton's HTTP endpoint.
            timeout_s: limit for one call, connection included (TritonTimeout after it).
            retry_after_s: the Retry-After hint of TritonUnavailable.
            on_error: called with (model, kind) for each failed call: kind is unavailable, timeout or failed.
        """
        self.url = url
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._on_error = on_error
        # The session's own total timeout is a backstop; each call is bounded by asyncio.wait_for below.
        self._client = triton_aio.InferenceServerClient(url, conn_limit=256, conn_timeout=timeout_s + 5.0)

    async def close(self) -> None:
        await self._client.close()

    async def server_live(self) -> bool:
        """True when Triton answers and says it is live; False when it is down (never raises for that).

        Not Triton's own readiness, which a model that failed to load turns false for the whole server: the
        gateway's /readyz asks about the versions it serves instead."""
        try:
            return bool(await asyncio.wait_for(self._client.is_server_live(), min(self.timeout_s, 5.0)))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, InferenceServerException):
            return False

    async def repository_index(self) -> list[dict[str, str]]:
        """Every model (and version) in the repository with its state: [{name, version, state, reason}]."""
        return list(await self._call("", self._client.get_model_repository_index()))

    async def model_config(self, name: str) -> dict[str, Any]:
        """The model's configuration as Triton resolved it (JSON form of config.pbtxt)."""
        return dict(await self._call(name, self._client.get_model_config(name)))

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                    version: str = "", class_count: Mapping[str, int] | None = None) -> InferResult:
        """One inference request with binary tensors.

        Args:
            inputs: name -> array with the batch dimension first.
            outputs: names of the outputs to return.
            version: a model version, "" for Triton's version policy.
            class_count: output name -> k to use Triton's classification extension on it.
        """
        request_inputs = []
        for name, array in inputs.items():
            tensor = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            request_inputs.append(tensor)
        counts = class_count or {}
        requested = [triton_http.InferRequestedOutput(name, binary_data=True, class_count=counts.get(name, 0))
                     for name in outputs]
        # aiohttp asks for gzip by default, and Triton then compresses every response (a reconstruction is 600 KB
        # of floats per image) for the gateway to decompress: over loopback or a LAN that is pure CPU cost.
        result = await self._call(model, self._client.infer(model, request_inputs, model_version=version,
                                                            outputs=requested, headers={"Accept-Encoding": "identity"}))
        return InferResult(outputs={name: result.as_numpy(name) for name in outputs},
                           model_version=str(result.get_response().get("model_version", "")))

    async def _call(self, model: str, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except asyncio.TimeoutError as error:
            self._count(model, "timeout")
            raise TritonTimeout(f"Triton did not answer within {self.timeout_s:.0f} s") from error
        except (aiohttp.ClientError, OSError) as error:
            self._count(model, "unavailable")
            raise TritonUnavailable(f"Triton is not reachable ({type(error).__name__}); retry shortly",
                                    retry_after_s=self.retry_after_s) from error
        except InferenceServerException as error:
            raise self._map_server_error(model, error) from error

    def _map_server_error(self, model: str, error: InferenceServerException) -> Exception:
        status, message = str(error.status() or ""), str(error.message() or error)
        if status == "404" or "unknown model" in message:
            self._count(model, "not_found")
            # loading, or a routed version being loaded again after a Triton restart
            if "has no available versions" in message or re.search(r"' version \d+ is not", message):
                return TritonUnavailable(f"model {model!r} is not loaded right now; retry shortly",
                                         retry_after_s=self.retry_after_s)
            return ModelNotFound(f"unknown model {model!r}")
        if status in ("502", "503") or "unavailable" in message.lower():
            self._count(model, "unavailable")
            return TritonUnavailable(f"Triton is not ready: {message}", retry_after_s=self.retry_after_s)
        self._count(model, "failed")
        LOGGER.warning("Triton error for model %s: [%s] %s", model, status, message)
        return InferenceFailed(f"inference failed in Triton: {message}")

    def _count(self, model: str, kind: str) -> None:
        if self._on_error is not None:
            self._on_error(model, kind)
