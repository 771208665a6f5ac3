"""The listener's bound on answers nobody takes: a client that asks and reads nothing is
cut off after ``send_timeout``; one that reads slowly, however long, is not. A real
listener and real sockets on loopback, with an answer larger than the kernel's buffers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from bridgemon.web.serving import HttpLimits, Listener

BODY = b"x" * (48 * 1024 * 1024)  # past what the kernel's buffers hold on loopback
SEND_TIMEOUT = 1.5


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async def large(_request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/large", large)
    served = Listener(app, replace(HttpLimits(), send_timeout=SEND_TIMEOUT))
    await served.start("127.0.0.1", 0)
    yield served
    await served.close()


def _asking(listener: Listener) -> socket.socket:
    """A connection that has asked for the large answer (a small receive buffer, so the
    answer piles up on the server's side soon)."""
    assert listener.bound is not None
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.connect(listener.bound)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return client


async def test_a_client_that_reads_nothing_is_cut_off(listener: Listener) -> None:
    client = _asking(listener)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        while listener.abandoned == 0 and loop.time() - began < SEND_TIMEOUT * 4:
            await asyncio.sleep(0.1)
        waited = loop.time() - began
        assert listener.abandoned == 1
        assert waited >= SEND_TIMEOUT  # not before its time
        await asyncio.sleep(0.2)
        assert listener.connections == 0
        # the client finds its connection ended, its answer cut short, once it reads
        # what reached it
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 5):
                received += len(chunk)
        assert 0 < received < len(BODY)
    finally:
        client.close()


async def test_a_slow_reader_is_never_cut_off(listener: Listener) -> None:
    client = _asking(listener)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    received = 0
    began = time.monotonic()
    try:
        # 48 MB at about 8 MB/s: six seconds, four times send_timeout, and bytes taken
        # between every two of the listener's looks.
        while received < len(BODY):
            chunk = await asyncio.wait_for(loop.sock_recv(client, 256 * 1024), 5)
            assert chunk, "connection closed before the answer was whole"
            received += len(chunk)
            await asyncio.sleep(len(chunk) / (8 * 1024 * 1024))
    finally:
        client.close()
    assert time.monotonic() - began > SEND_TIMEOUT * 2
    assert listener.abandoned == 0
