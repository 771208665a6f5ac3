"""The listening socket of the web app, with bounds: how long an idle connection may stay
and how many connections may be open at once.

aiohttp's runner keeps an idle keep-alive connection (or one that never sends a request)
for an hour by default and accepts as many connections as the process has descriptors:
500 idle sockets held 500 descriptors for as long as their clients liked. Here an idle
connection is closed after ``keepalive_timeout`` and, past ``max_connections`` open ones, a
new connection gets a short 503 and is closed at once, so the descriptors the web app can
take are bounded whatever clients do.

A client that asks and then reads nothing would hold its connection, its handler and the
answer's bytes (the API's list of 12,000 sites is 8 MB) for as long as it stays: aiohttp
waits for the socket to drain without a limit. So the listener looks at every
connection's unsent bytes every few seconds, and a connection whose unsent bytes have not
moved for ``send_timeout`` is aborted (``abandoned``, in /healthz). A slow reader that
takes something between two looks is never cut off, however long its answer takes.

With TLS (``[web] tls_cert``/``tls_key``) the same socket speaks TLS 1.2 or later; a client
that connects and never finishes its handshake is dropped after ``tls_handshake_timeout``
(the gate counts a connection once its handshake is done).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bridgemon import media_types
from bridgemon.config import tls_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    # Prometheus keeps its connection between scrapes (every 15-60 s) but reconnects
    # without harm; a browser tab refreshes the status page every 30 s.
    keepalive_timeout: float = 15.0
    max_connections: int = 256
    backlog: int = 128
    body_timeout: float = 10.0  # to receive a request body once the headers are in
    tls_handshake_timeout: float = 10.0
    # An answer the client takes nothing of for this long is given up (see the module's
    # docstring); Prometheus gives up on a scrape after 10 s by default anyway.
    send_timeout: float = 60.0


_FULL_BODY = b'{"error": "too many connections, try again shortly"}'
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: %s\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 5\r\n"
    b"Server: bridgemon\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"\r\n" % (media_types.with_charset(media_types.JSON).encode(), len(_FULL_BODY))
) + _FULL_BODY


class _Gate(asyncio.Protocol):
    """Admits a new connection to aiohttp's handler, or refuses it when the server is full.

    Counted at ``connection_made``, which the loop calls one connection at a time: counting
    when the protocol is created would miss a burst of accepts whose handlers are not
    registered yet."""

    def __init__(self, server: web.Server, limit: int, refused: list[int]) -> None:
        self._server = server
        self._limit = limit
        self._refused = refused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self._server.connections) >= self._limit:
            self._refused[0] += 1
            transport.write(_FULL)
            transport.close()
            return
        handler = self._server()
        transport.set_protocol(handler)
        handler.connection_made(transport)


_RESPONSE_SERVER = "bridgemon"


def _hide_server_version() -> None:
    """aiohttp answers ``Server: Python/3.x aiohttp/3.y`` even on its own 400s for malformed
    requests, which no hook of ours sees; its response module reads this name when it sends
    headers, so setting it here covers every response."""
    from aiohttp import web_response

    web_response.SERVER_SOFTWARE = _RESPONSE_SERVER  # type: ignore[attr-defined]


class Listener:
    """The app served on one address with ``HttpLimits``; ``close`` ends every connection."""

    def __init__(self, app: web.Application, limits: HttpLimits) -> None:
        self.limits = limits
        self.refused = [0]  # connections turned away because the server was full
        self.abandoned = 0  # connections aborted: their client took nothing for send_timeout
        # Each connection with unsent bytes: how many, and since when that count holds.
        self._unsent: dict[asyncio.BaseTransport, tuple[int, float]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=limits.keepalive_timeout)
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self, host: str, port: int,
                    tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        _hide_server_version()
        self._tls = tls
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        limit = self.limits.max_connections
        self._server = await loop.create_server(
            lambda: _Gate(server, limit, self.refused), host, port,
            reuse_address=True, backlog=self.limits.backlog, ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
        )
        sockets = self._server.sockets
        name = sockets[0].getsockname() if sockets else (host, port)
        self.bound = (str(name[0]), int(name[1]))
        self._watch = asyncio.create_task(self._abandon_stuck_answers())
        return self.bound

    async def _abandon_stuck_answers(self) -> None:
        """Every few seconds (a quarter of ``send_timeout``, at most 5 s), ``look``."""
        every = min(5.0, self.limits.send_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            try:
                self.look(loop.time())
            except Exception:  # the watch must outlive any one look
                log.exception("looking for answers nobody takes failed")

    def look(self, now: float) -> None:
        """Abort the connections whose unsent bytes have stayed the same, and more than
        none, for ``send_timeout``. (At most ``max_connections``: a few µs each.)"""
        server = self._runner.server
        if server is None:
            return
        seen: dict[asyncio.BaseTransport, tuple[int, float]] = {}
        for handler in server.connections:
            transport = handler.transport
            if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
                continue
            unsent = transport.get_write_buffer_size()
            if not unsent:
                continue
            before = self._unsent.get(transport)
            since = before[1] if before is not None and before[0] == unsent else now
            if now - since >= self.limits.send_timeout:
                self.abandoned += 1
                peer = transport.get_extra_info("peername")
                log.warning("web client %s took none of the last %d bytes of its answer "
                            "in %.0f s: connection closed", peer[0] if peer else "?",
                            unsent, now - since)
                transport.abort()
                continue
            seen[transport] = (unsent, since)
        self._unsent = seen  # closed connections fall out here

    @property
    def tls(self) -> bool:
        """Whether this listener serves TLS (fixed when it starts)."""
        return self._tls is not None

    def renew_tls(self, cert: Path, key: Path) -> None:
        """Serve a renewed certificate from the next handshake on, without a restart.
        The pair is loaded into a context aside first, so a bad one (TlsError) leaves the
        running certificate as it was; connections already open keep theirs."""
        if self._tls is None:
            raise RuntimeError("this listener was started without TLS")
        tls_context(cert, key)  # the pair checked aside first: TlsError names the file
        self._tls.load_cert_chain(cert, key)

    @property
    def connections(self) -> int:
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._server is not None:
            self._server.close()
        await self._runner.cleanup()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                log.warning("web connections still open 5 s after shutdown")
            self._server = None

