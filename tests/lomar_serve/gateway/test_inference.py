"""Triton client error mapping over real sockets: refused, silent and hung-up servers."""
from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from lomar_serve.gateway.errors import TritonTimeout, TritonUnavailable
from lomar_serve.gateway.inference import TritonClient

IMAGE = {"image": np.zeros((1, 3, 8, 8), np.uint8)}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _with_server(handler, body):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    errors: list[tuple[str, str]] = []
    client = TritonClient(f"127.0.0.1:{port}", timeout_s=0.5, retry_after_s=3,
                          on_error=lambda model, kind: errors.append((model, kind)))
    try:
        return await body(client), errors
    finally:
        await client.close()
        server.close()


def test_refused_connection_is_unavailable_with_retry_after():
    async def main():
        errors = []
        client = TritonClient(f"127.0.0.1:{_closed_port()}", retry_after_s=3,
                              on_error=lambda model, kind: errors.append(kind))
        try:
            assert await client.server_live() is False
            with pytest.raises(TritonUnavailable) as raised:
                await client.infer("m", IMAGE, ["logits"])
        finally:
            await client.close()
        assert raised.value.headers == {"Retry-After": "3"} and errors == ["unavailable"]
    asyncio.run(main())


def test_silent_server_times_out():
    async def silent(reader, writer):
        await reader.read(1 << 20)
        await asyncio.sleep(5)

    async def body(client):
        with pytest.raises(TritonTimeout):
            await client.infer("m", IMAGE, ["logits"])

    _, errors = asyncio.run(_with_server(silent, body))
    assert errors == [("m", "timeout")]


def test_server_hanging_up_mid_request_is_unavailable():
    async def hang_up(reader, writer):
        await reader.read(100)
        writer.close()

    async def body(client):
        with pytest.raises(TritonUnavailable):
            await client.model_config("m")

    _, errors = asyncio.run(_with_server(hang_up, body))
    assert errors == [("m", "unavailable")]
