"""SIP OPTIONS check over UDP, TCP or TLS: is the site's SIP stack alive?

Holds the probe: one OPTIONS transaction (RFC 3261 §11) to ``sip:<site>:<port>``. Any
final response means a SIP stack lives there (many answer OPTIONS with 404, 405 or 501),
unless ``spec.accept`` narrows the codes. Provisional responses (1xx) are not an answer;
that one came is recorded, because "only 100 Trying" is a stack that is stuck, not dead.

UDP follows the non-INVITE client transaction (RFC 3261 §17.1.2): the request is
retransmitted after T1 = 500 ms, the interval doubling up to T2 = 4 s (T2 straight away
once a provisional response came), for as long as ``spec.timeout`` allows. The socket is
connected, so an ICMP "port unreachable" is seen and reported at once. Over TCP and TLS
the request goes once and messages are framed by Content-Length; a peer whose answer is
still coming when the time is up is reported as such, with how much of it came.

A response is ours when its top Via branch, its Call-ID and its CSeq method match the
request's. Anything else — other responses, requests, garbage, oversized datagrams — is
counted and ignored; a stream that sends garbage ends the check (its framing is lost).

``details``: ``transport``, ``port``, ``address``, ``status_code``, ``reason_phrase``,
``rtt_seconds`` (first transmission → final response), ``requests_sent``, ``server``
(Server or User-Agent header), ``provisional`` (first 1xx code seen), counts of
``unparseable`` and ``unmatched`` messages when there were any; for TLS ``tls_version``
and, when the certificate could be read, ``cert_not_after`` and ``cert_subject``. What
the device wrote (reason phrase, Server) is cleaned by
:func:`~bridgemon.probes.device_text.device_text` before it goes into details or reasons.

Must not: wait past ``spec.timeout`` in total (DNS included), read unbounded (messages
are capped at ``sip_message.MAX_MESSAGE_BYTES``, their number per check too, and the
bytes taken from a stream at ``MAX_STREAM_BYTES``), hold the event loop, leave a
socket or reader registered after returning, raise for anything the network does, or
touch state and metrics.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from dataclasses import dataclass, field

from bridgemon import __version__
from bridgemon.probes import ProbeContext
from bridgemon.probes.conn import (
    abort,
    connect,
    connect_failure,
    describe_verify_error,
    fetch_cert,
    host_for_uri,
    peer_cert,
    tls_context,
)
from bridgemon.probes.device_text import device_text
from bridgemon.probes.failures import (
    ProbeFailure,
    connect_failures,
    handshake_failures,
    map_failures,
    stream_failures,
)
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import ProbeResult
from bridgemon.probes.sip_message import (
    MAX_MESSAGE_BYTES,
    OptionsRequest,
    SipMessage,
    SipParseError,
    answers,
    build_options,
    head_end,
    parse,
)
from bridgemon.specs import SipSpec

T1 = 0.5  # RFC 3261 §17.1.2.2: first retransmission interval
T2 = 4.0  # ... doubling up to this
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MAX_INBOX = 64  # datagrams queued between two looks; a flood beyond is dropped
MAX_READS_PER_WAKEUP = 32  # datagrams read per readiness callback, so a flood can't hog
MAX_MESSAGES = 256  # messages looked at per check before giving up on the peer
STREAM_READ = 4096  # bytes asked of a TCP/TLS stream at a time
# Bytes taken from a TCP/TLS stream per check: room for the answer and a few messages of
# the peer's own; keep-alive CRLFs count too, so an endless stream of them ends the check.
MAX_STREAM_BYTES = 8 * MAX_MESSAGE_BYTES
USER_AGENT = f"bridgemon/{__version__}"
LABEL = "SIP OPTIONS"


@dataclass(slots=True)
class _Transaction:
    """One OPTIONS transaction's progress, for the answer and for the timeout's words."""

    transport: str
    port: int
    phase: str = "looking up the name"
    request: OptionsRequest | None = None
    sent: int = 0
    first_sent: float | None = None  # monotonic
    provisional: SipMessage | None = None
    unparseable: int = 0
    first_unparseable: str | None = None
    unmatched: int = 0
    seen: int = 0
    stream: _Framer | None = None  # TCP/TLS: what of the next message has come
    details: dict[str, object] = field(default_factory=dict)

    def take(self, data: bytes | SipMessage | _Oversized) -> SipMessage | None:
        """Look at one received message: the final response to us, or None (noted)."""
        self.seen += 1
        if self.seen > MAX_MESSAGES:
            raise ProbeFailure(f"over {MAX_MESSAGES} messages and none of them an answer")
        if isinstance(data, _Oversized):
            self.unparseable += 1
            if self.first_unparseable is None:
                self.first_unparseable = (
                    f"datagram of {data.size} bytes, over the {MAX_MESSAGE_BYTES} accepted"
                )
            return None
        if isinstance(data, SipMessage):
            message = data
        else:
            try:
                message = parse(data)
            except SipParseError as exc:
                self.unparseable += 1
                if self.first_unparseable is None:
                    self.first_unparseable = str(exc)
                return None
        assert self.request is not None
        if not answers(message, self.request):
            self.unmatched += 1  # a stray response, or a request from the peer
            return None
        assert message.status_code is not None
        if message.status_code < 200:
            if self.provisional is None:
                self.provisional = message
            return None
        return message


async def probe(target: str, spec: SipSpec, ctx: ProbeContext) -> ProbeResult:
    """One OPTIONS transaction to ``target`` (IP or host name) over ``spec.transport``."""
    transport = spec.transport.lower()
    port = spec.port or DEFAULT_PORTS.get(transport, 5060)
    tx = _Transaction(transport=transport, port=port)
    details = tx.details
    details.update(transport=transport, port=port)
    failure: str | None = None
    final: SipMessage | None = None
    rtt: float | None = None
    # The slot covers the socket's whole life; the timeout starts once we hold it, since
    # waiting for a slot is this process being busy, not the site being slow.
    async with ctx.sockets:
        started_wall = time.time()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.timeout
        try:
            async with asyncio.timeout_at(deadline):
                if transport not in DEFAULT_PORTS:
                    raise ProbeFailure(f"unknown transport {spec.transport!r} (udp, tcp or tls)")
                with map_failures({ResolveError: str}):
                    address = await resolve(target, min(ctx.resolve_timeout, spec.timeout))
                details["address"] = address
                if transport == "udp":
                    final, rtt = await _over_udp(address, target, tx)
                else:
                    final, rtt = await _over_stream(address, target, spec, deadline, tx)
        except ProbeFailure as exc:
            failure = str(exc)
        except TimeoutError:
            failure = _timeout_reason(tx, spec.timeout)
        duration = time.monotonic() - started
    details["requests_sent"] = tx.sent
    if tx.provisional is not None:
        details["provisional"] = tx.provisional.status_code
    if tx.unparseable:
        details["unparseable"] = tx.unparseable
    if tx.unmatched:
        details["unmatched"] = tx.unmatched
    if final is not None:
        details["status_code"] = final.status_code
        details["reason_phrase"] = device_text(final.reason_phrase, 100)
        details["rtt_seconds"] = rtt
        server = final.header("server") or final.header("user-agent")
        if server:
            details["server"] = device_text(server, 200)
        if spec.accept and final.status_code not in spec.accept:
            expected = " or ".join(str(code) for code in spec.accept)
            failure = f"answered {_status(final)}, expected {expected}"
    return ProbeResult(
        check=spec.name,
        kind="sip",
        target=_uri(target, port, transport),
        ok=failure is None,
        started_at=started_wall,
        duration=duration,
        reason=f"{LABEL}: {failure}" if failure else None,
        details=details,
    )


def _uri(host: str, port: int, transport: str) -> str:
    uri = f"sip:{host_for_uri(host)}:{port}"
    return uri if transport == "udp" else f"{uri};transport={transport}"


def _status(message: SipMessage) -> str:
    return f"{message.status_code} {device_text(message.reason_phrase, 100)}".strip()


def _timeout_reason(tx: _Transaction, timeout: float) -> str:
    t = f"{timeout:g} s"
    if tx.phase == "looking up the name":
        return f"timed out after {t} looking up the name"
    if tx.phase == "connecting":
        return f"{tx.transport.upper()} {tx.port}: timed out after {t} connecting"
    if tx.phase == "in the TLS handshake":
        return f"timed out after {t} in the TLS handshake"
    if tx.provisional is not None:
        return f"only provisional {_status(tx.provisional)} in {t}, no final answer"
    partial = tx.stream.progress() if tx.stream is not None else None
    if partial is not None:  # a peer trickling its answer is not a peer that never spoke
        return f"answer incomplete after {t}: {partial} received"
    times = "once" if tx.sent == 1 else f"{tx.sent} times"
    sent = f" (sent {times} over UDP)" if tx.transport == "udp" else ""
    if tx.unparseable:
        what = "datagram" if tx.transport == "udp" else "message"
        return (
            f"no valid answer in {t}{sent}; {tx.unparseable} unparseable "
            f"{what}{'s' if tx.unparseable != 1 else ''} ({tx.first_unparseable})"
        )
    return f"no answer in {t}{sent}"


def _udp_failure(exc: OSError, port: int) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on UDP {port} (ICMP port unreachable)"
    return f"UDP {port}: {connect_failure(exc)}"


@dataclass(frozen=True, slots=True)
class _Oversized:
    """A datagram over the size cap: only its size is kept."""

    size: int


class _Inbox:
    """Datagrams (and ICMP errors) from a connected UDP socket, read as they arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.items: collections.deque[bytes | _Oversized | OSError] = collections.deque()
        self.event = asyncio.Event()
        self.dropped = 0
        self._buffer = bytearray(MAX_MESSAGE_BYTES + 1)

    def on_readable(self) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                # MSG_TRUNC: the kernel returns the datagram's real size even when it is
                # larger than the buffer, so a huge one is reported with its size while
                # we never hold more than the cap.
                size = self.sock.recv_into(self._buffer, len(self._buffer), socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error for an earlier send
                self.items.append(exc)
                break
            if len(self.items) >= MAX_INBOX:
                self.dropped += 1
            elif size > MAX_MESSAGE_BYTES:
                self.items.append(_Oversized(size))
            else:
                self.items.append(bytes(self._buffer[:size]))
        self.event.set()


async def _over_udp(address: str, host: str, tx: _Transaction) -> tuple[SipMessage, float]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:  # out of descriptors or buffers: this host's trouble, say so
        raise ProbeFailure(f"cannot open a UDP socket here: {exc.strerror or exc}") from None
    fd = sock.fileno()
    registered = False
    try:
        sock.setblocking(False)
        tx.phase = "sending"
        try:
            # Connected: the kernel then drops datagrams from other addresses and reports
            # ICMP errors (port unreachable) to us. RFC 3581 stacks answer from the
            # address and port the request went to, so nothing legitimate is lost.
            sock.connect((address, tx.port))
        except OSError as exc:
            raise ProbeFailure(_udp_failure(exc, tx.port)) from None
        local_host, local_port = sock.getsockname()[:2]
        tx.request = build_options(
            host=host_for_uri(host), port=tx.port, transport="udp",
            local_host=host_for_uri(local_host), local_port=local_port, user_agent=USER_AGENT,
        )  # fmt: skip
        inbox = _Inbox(sock)
        loop.add_reader(fd, inbox.on_readable)
        registered = True
        interval = T1
        next_send = loop.time()
        tx.phase = "waiting for the answer"
        while True:
            if loop.time() >= next_send:
                try:
                    sock.send(tx.request.data)
                except (BlockingIOError, InterruptedError):
                    pass  # send buffer full: this transmission is lost, like on the wire
                except OSError as exc:
                    raise ProbeFailure(_udp_failure(exc, tx.port)) from None
                tx.sent += 1
                if tx.first_sent is None:
                    tx.first_sent = time.monotonic()
                # §17.1.2.2: T1 doubling up to T2; T2 once a provisional response came.
                if tx.provisional is not None:
                    interval = T2
                next_send = loop.time() + interval
                interval = min(interval * 2, T2)
            while inbox.items:
                item = inbox.items.popleft()
                if isinstance(item, OSError):
                    raise ProbeFailure(_udp_failure(item, tx.port))
                final = tx.take(item)
                if final is not None:
                    assert tx.first_sent is not None
                    return final, time.monotonic() - tx.first_sent
            inbox.event.clear()
            try:
                async with asyncio.timeout_at(next_send):  # the outer timeout still rules
                    await inbox.event.wait()
            except TimeoutError:
                pass
    finally:
        if registered:
            loop.remove_reader(fd)
        sock.close()


async def _over_stream(
    address: str, host: str, spec: SipSpec, deadline: float, tx: _Transaction
) -> tuple[SipMessage, float]:
    details = tx.details
    name = tx.transport.upper()
    sock: socket.socket | None = None
    writer: asyncio.StreamWriter | None = None
    label, tls_label = f"{name} {tx.port}: ", f"TLS {tx.port}: "
    try:
        with map_failures(stream_failures(lambda: "", label, tls_label)):
            tx.phase = "connecting"
            with map_failures(connect_failures(label)):
                sock = await connect(address, tx.port)
            if tx.transport == "tls":
                tx.phase = "in the TLS handshake"
                context = tls_context(spec.verify_tls, spec.ca_file)
                with map_failures(handshake_failures(tls_label, "in the handshake")):
                    try:
                        reader, writer = await asyncio.open_connection(
                            sock=sock, ssl=context, server_hostname=host.strip("[]"),
                            limit=MAX_MESSAGE_BYTES,
                        )  # fmt: skip
                    except ssl.SSLCertVerificationError as exc:
                        sock.close()
                        cert = await fetch_cert(address, tx.port, host.strip("[]"), deadline)
                        raise ProbeFailure(
                            f"{tls_label}{describe_verify_error(exc, cert, host)}"
                        ) from None
                cert, version = peer_cert(writer)
                details["tls_version"] = version
                details["tls_verified"] = spec.verify_tls
                if cert is not None:
                    details["cert_not_after"] = int(cert.not_after)
                    details["cert_subject"] = cert.subject
            else:
                reader, writer = await asyncio.open_connection(
                    sock=sock, limit=MAX_MESSAGE_BYTES
                )
            local_host, local_port = sock.getsockname()[:2]
            tx.request = build_options(
                host=host_for_uri(host), port=tx.port, transport=tx.transport,
                local_host=host_for_uri(local_host), local_port=local_port,
                user_agent=USER_AGENT,
            )  # fmt: skip
            tx.phase = "sending"
            writer.write(tx.request.data)
            await writer.drain()
            tx.sent = 1
            tx.first_sent = time.monotonic()
            tx.phase = "waiting for the answer"
            tx.stream = _Framer(reader, name)
            while True:
                final = tx.take(await tx.stream.next())
                if final is not None:
                    return final, time.monotonic() - tx.first_sent
    finally:
        abort(sock, writer)


class _Framer:
    """SIP messages out of a TCP/TLS stream, framed by Content-Length (RFC 3261 §18.3).

    Keeps what has come of the next message, so that a timeout can say how far a
    trickling peer got. Bounded: a message over MAX_MESSAGE_BYTES ends the check.
    """

    def __init__(self, reader: asyncio.StreamReader, name: str) -> None:
        self._reader = reader
        self._name = name
        self._buf = bytearray()
        self._searched = 0  # the head's end is not before this offset
        self._head: tuple[int, int] | None = None  # (head bytes, body length) once known
        self._total = 0  # bytes read from the stream so far

    def progress(self) -> str | None:
        """What has come of the message being received, in words; None if nothing."""
        if self._head is not None:
            head, length = self._head
            return f"headers and {len(self._buf) - head} of {length} body bytes"
        size = len(self._buf.lstrip(b"\r\n"))
        if not size:
            return None
        return f"{size} byte{'s' if size != 1 else ''} of headers"

    async def next(self) -> SipMessage:
        """The next message, keep-alives (RFC 5626 CRLFs between messages) skipped."""
        buf = self._buf
        while True:
            if buf and buf[0] in b"\r\n":
                del buf[: len(buf) - len(buf.lstrip(b"\r\n"))]
                self._searched = 0
            bounds = head_end(buf, max(0, self._searched - 3))
            if bounds is not None:
                break
            self._searched = len(buf)
            if len(buf) > MAX_MESSAGE_BYTES:
                raise ProbeFailure(
                    f"message headers over {MAX_MESSAGE_BYTES} bytes on {self._name}"
                )
            await self._more()
        try:
            message = parse(bytes(buf[: bounds[1]]))
        except SipParseError as exc:
            # On a stream, garbage means the framing is lost: nothing after it can be trusted.
            raise ProbeFailure(f"not a SIP answer on {self._name}: {exc}") from None
        length = message.content_length or 0
        total = bounds[1] + length
        if total > MAX_MESSAGE_BYTES:
            raise ProbeFailure(f"message of {total} bytes on {self._name}, "
                        f"over the {MAX_MESSAGE_BYTES} accepted")  # fmt: skip
        self._head = (bounds[1], length)
        while len(buf) < total:  # the body: read to keep the framing, unused
            await self._more()
        del buf[:total]
        self._searched = 0
        self._head = None
        return message

    async def _more(self) -> None:
        if self._total >= MAX_STREAM_BYTES:
            raise ProbeFailure(f"over {MAX_STREAM_BYTES // 1024} KiB received on {self._name} "
                        "and none of it an answer")  # fmt: skip
        data = await self._reader.read(STREAM_READ)
        # A read from a full buffer does not yield to the loop: yield here, so that a
        # flooding peer cannot hold the loop (nor this check's deadline).
        await asyncio.sleep(0)
        self._total += len(data)
        if not data:
            if self._buf.strip(b"\r\n"):
                raise ProbeFailure(
                    f"the server closed the {self._name} connection in the middle of a message"
                )
            raise ProbeFailure(f"the server closed the {self._name} connection without an answer")
        self._buf += data
