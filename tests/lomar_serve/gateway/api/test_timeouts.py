"""Header and body read timeouts and client disconnects, over real sockets to a real uvicorn server (in a thread)
running the gateway app on the FAKE backend."""
from __future__ import annotations

import logging
import socket
import time

import httpx

from tests.lomar_serve.gateway.api.conftest import TIMEOUT_S


def _read_until_closed(sock: socket.socket, limit_s: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def test_incomplete_headers_are_cut_off(live_server):
    _, port = live_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-")
        data, seconds = _read_until_closed(sock)
    assert data == b"" and seconds < TIMEOUT_S + 3


def test_a_short_body_is_408_after_the_body_timeout(live_server):
    _, port = live_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"\xff" * 5000)
        data, seconds = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in data
    assert seconds < TIMEOUT_S + 3


def _get_healthz(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on an open connection; the whole response."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < len(b'{"status":"ok"}'):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_keep_alive_connection_has_the_header_timeout_for_its_next_request(live_server):
    _, port = live_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):  # each next request within the timeout: the connection stays open
            assert _get_healthz(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT_S / 3)
        data, seconds = _read_until_closed(sock)  # no next request: closed after the header timeout
    assert data == b"" and seconds < TIMEOUT_S + 3


def test_client_disconnect_is_counted_apart_and_not_an_error(live_server, caplog):
    url, port = live_server
    with caplog.at_level(logging.DEBUG, logger="lomar_serve"):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"\xff" * 5000)
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while 'endpoint="embed",model="fake_classifier",status="499"' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "the disconnect was not counted as status 499"
            time.sleep(0.05)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert any("disconnected" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
