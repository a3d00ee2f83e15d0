"""Re-index a collection with another version of its model, from the model inputs it keeps.

One function, free of the gateway: it takes the collection and an `embed` callable (model inputs -> vectors of
the target version), so the work can move to another process (a control plane) unchanged. The live index keeps
answering while the new one fills; adds made meanwhile go to both (Collection.add); the switch is one step
under the collection's lock (Collection.finish_reindex). An interrupted re-index continues where it stopped:
the vectors already computed are in the store.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np

from lomar_serve.search.collection import Collection

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(function, *args)


async def reindex(collection: Collection, version: str, embed: Callable[[np.ndarray], Awaitable[np.ndarray]], *,
                  batch: int = 16, run: Offload = _in_thread) -> int:
    """Build `collection`'s index for model `version`, then make it live.

    Args:
        embed: (n, 3, H, W) uint8 model inputs -> (n, D) float32 unit vectors computed by `version`.
        batch: images per `embed` call.
        run: how blocking store work is run off the event loop.
    Returns:
        the number of images embedded.
    """
    await run(collection.begin_reindex, version)
    LOGGER.info("collection %s: re-indexing %d images with version %s", collection.name, collection.count(),
                version)
    done = 0
    while True:
        if collection.info.building != version:
            LOGGER.info("collection %s: re-index to version %s superseded", collection.name, version)
            return done
        keys, images = await run(collection.missing, version, batch)
        if not len(keys):
            if await run(collection.finish_reindex, version):
                return done
            continue
        vectors = await embed(images)  # (n, D)
        await run(collection.put_vectors, version, keys, vectors)
        done += len(keys)
