"""Triton client error mapping over real sockets: refused, silent and hung-up servers."""
from __future__ import annotations

import asyncio
import json
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


def test_infer_asks_for_uncompressed_responses_and_reads_binary_outputs():
    """aiohttp would ask for gzip, and Triton would compress every response for the gateway to decompress."""
    logits = np.array([[0.5, -1.0, 2.0]], np.float32)
    seen: dict[str, str] = {}

    async def triton(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        seen.update((name.lower(), value) for name, _, value in (line.partition(": ") for line in head[1:] if line))
        await reader.readexactly(int(seen["content-length"]))
        header = json.dumps({"model_name": "m", "model_version": "3", "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [1, 3],
             "parameters": {"binary_data_size": logits.nbytes}}]}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s%s"
                     % (len(header), len(header) + logits.nbytes, header, logits.tobytes()))
        await writer.drain()

    async def body(client):
        return await client.infer("m", IMAGE, ["logits"])

    result, errors = asyncio.run(_with_server(triton, body))
    assert seen["accept-encoding"] == "identity" and errors == []
    assert result.model_version == "3" and np.array_equal(result.outputs["logits"], logits)
