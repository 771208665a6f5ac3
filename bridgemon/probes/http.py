"""HTTP(S) check: one GET (or HEAD) to a site's web interface, with TLS and certificate.

Holds the probe and its small HTTP/1.1 client over asyncio streams: a request with
``Connection: close``, a bounded read of the status line and headers, then of the body
(Content-Length, chunked or until close), stopping at ``spec.max_body_bytes``.

What it measures (``details``), all in seconds from the probe's own clock:
``connect_seconds`` (TCP handshake), ``tls_seconds`` (TLS handshake),
``ttfb_seconds`` (request written → first byte of the response: the server's think time
plus one round trip, without DNS, connect and TLS), ``total_seconds`` (whole check, DNS
and redirects included, until the last body byte read); plus ``status``,
``body_bytes`` (read, at most the cap), ``body_truncated``, and for HTTPS ``tls_verified``,
``tls_version``, ``cert_not_after`` (unix seconds), ``cert_expires_in_seconds``,
``cert_subject``, ``cert_issuer``; ``cert_expiring`` is True when a verified certificate
expires within ``spec.cert_expiry_warn`` (the check still passes, with a reason saying
so — readiness makes that "degraded"). With ``verify_tls`` off the certificate is
reported but never judged: that setting means "this device's certificate is not ours to
trust".

Must not: follow redirects unless ``spec.follow_redirects`` (and then at most
``MAX_REDIRECTS``), read more than the caps, wait past ``spec.timeout`` in total, keep a
connection open after returning, raise for anything the network does, or touch state
and metrics.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from bridgemon import __version__
from bridgemon.probes import ProbeContext
from bridgemon.probes.conn import (
    CertInfo,
    abort,
    connect,
    connect_failure,
    describe_verify_error,
    fetch_cert,
    host_for_uri,
    peer_cert,
    tls_context,
    tls_failure,
)
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import HttpSpec

MAX_HEAD_BYTES = 64 * 1024  # status line + headers; a device sending more is broken
MAX_REDIRECTS = 5
MAX_INTERIM = 5  # 1xx responses skipped before the real one (103 Early Hints, ...)
MAX_CHUNK_LINE = 1024
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_SIZE = 16 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(r"HTTP/(\d)\.(\d) +(\d{3})(?: (.*))?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class _Fail(Exception):
    """The check failed; the message is the reason without the "HTTPS 443:" label."""


@dataclass(frozen=True, slots=True)
class Url:
    """A split http(s) URL: what to connect to and what to ask for."""

    scheme: str
    host: str  # brackets stripped
    port: int
    target: str  # path and query, at least "/"

    @property
    def text(self) -> str:
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host_for_uri(self.host)}{port}{self.target}"

    @property
    def host_header(self) -> str:
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{host_for_uri(self.host)}{port}"

    @property
    def label(self) -> str:
        """How reasons name the check: "HTTPS 443", "HTTP 8080"."""
        return f"{self.scheme.upper()} {self.port}"


def split_url(url: str) -> Url:
    """Parse an http(s) URL; ValueError with a clear message otherwise."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: user names and passwords in the URL are not supported")
    host = parts.hostname  # lower-cased, brackets stripped
    if not host:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{url!r}: bad port (a number 1-65535)")
    target = parts.path or "/"
    if not target.startswith("/"):
        target = "/" + target
    if parts.query:
        target += "?" + parts.query
    if any(c in target for c in " \r\n"):
        raise ValueError(f"{url!r}: spaces or line breaks in the path")
    return Url(scheme, host, port or DEFAULT_PORTS[scheme], target)


def site_url(target: str, spec: HttpSpec) -> str:
    """``spec.url``, or the URL built from the site address and the spec's parts."""
    if spec.url:
        return spec.url
    port = f":{spec.port}" if spec.port else ""
    path = spec.path if spec.path.startswith("/") else "/" + spec.path
    return f"{spec.scheme}://{host_for_uri(target)}{port}{path}"


@dataclass(slots=True)
class _State:
    """What the probe is doing now, for the timeout reason; and the overall deadline."""

    deadline: float  # loop time
    label: str
    phase: str = "looking up the name"
    details: dict[str, object] = field(default_factory=dict)
    cert: CertInfo | None = None  # of the latest hop's TLS handshake
    verified: bool = False  # ... and whether it was verified


@dataclass(slots=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    rest: bytes  # bytes read past the head: the start of the body


async def probe(target: str, spec: HttpSpec, ctx: ProbeContext) -> ProbeResult:
    """GET/HEAD the site's URL; ``target`` is the site address (ignored when spec.url)."""
    text = site_url(target, spec)
    try:
        url = split_url(text)
    except ValueError as exc:  # config validation should have caught it; say so plainly
        return ProbeResult(
            check=spec.name, kind=spec.scheme, target=text, ok=False, started_at=time.time(),
            duration=0.0, reason=f"HTTP: bad URL: {exc}",
        )  # fmt: skip
    failure: str | None = None
    warning: str | None = None
    # One slot for the whole check: its connections (redirects, the certificate fetch
    # after a failed verification) are strictly one after another, never two at once.
    async with ctx.sockets:
        started_wall = time.time()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        state = _State(deadline=loop.time() + spec.timeout, label=url.label)
        details = state.details
        try:
            async with asyncio.timeout_at(state.deadline):
                warning = await _run(url, spec, ctx, state)
        except _Fail as exc:
            failure = f"{state.label}: {exc}"
        except TimeoutError:
            failure = f"{state.label}: timed out after {spec.timeout:g} s {state.phase}"
        details["total_seconds"] = time.monotonic() - started
        duration = time.monotonic() - started
    return ProbeResult(
        check=spec.name,
        kind=url.scheme,  # "http" or "https", as the check types are called
        target=url.text,
        ok=failure is None,
        started_at=started_wall,
        duration=duration,
        reason=failure or warning,
        details=details,
    )


async def _run(url: Url, spec: HttpSpec, ctx: ProbeContext, state: _State) -> str | None:
    """The exchanges (one, or a redirect chain); returns a warning, raises _Fail."""
    redirects: list[str] = []
    while True:
        state.label = url.label
        response = await _exchange(url, spec, ctx, state)
        location = response.headers.get("location")
        if not (spec.follow_redirects and response.status in REDIRECT_CODES and location):
            break
        if len(redirects) >= MAX_REDIRECTS:
            raise _Fail(f"more than {MAX_REDIRECTS} redirects (last to {location})")
        try:
            url = split_url(urljoin(url.text, location))
        except ValueError as exc:
            raise _Fail(f"redirect to an unusable URL: {exc}") from None
        redirects.append(url.text)
        state.details["redirects"] = list(redirects)
    details = state.details
    if response.status not in spec.expect_status:
        expected = " or ".join(str(code) for code in spec.expect_status)
        moved = ""
        if response.status in REDIRECT_CODES and location:
            moved = f" (redirect to {location[:200]})"
        raise _Fail(f"status {response.status}{moved}, expected {expected}")
    if state.verified and state.cert is not None:
        left = state.cert.not_after - time.time()
        if left <= spec.cert_expiry_warn:
            details["cert_expiring"] = True
            date = state.cert.not_after_date
            return f"{url.label}: certificate expires in {_span(left)} ({date})"
    return None


def _span(seconds: float) -> str:
    """"3 days", "1 day", "5 hours" — how long until a certificate expires."""
    days = round(seconds / 86400)
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = max(1, round(seconds / 3600))
    return f"{hours} hour{'s' if hours != 1 else ''}"


async def _exchange(url: Url, spec: HttpSpec, ctx: ProbeContext, state: _State) -> _Response:
    """One connection: connect, TLS, request, response head and (capped) body."""
    details = state.details
    for key in _TLS_KEYS:  # a redirect may lead from https to http: no stale TLS facts
        details.pop(key, None)
    state.cert, state.verified = None, False
    state.phase = "looking up the name"
    try:
        address = await resolve(url.host, min(ctx.resolve_timeout, spec.timeout))
    except ResolveError as exc:
        raise _Fail(str(exc)) from None
    details["address"] = address
    sock: socket.socket | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        state.phase = "connecting"
        began = time.monotonic()
        try:
            sock = await connect(address, url.port)
        except TimeoutError:
            raise
        except OSError as exc:
            raise _Fail(connect_failure(exc)) from None
        details["connect_seconds"] = time.monotonic() - began
        if url.scheme == "https":
            state.phase = "in the TLS handshake"
            began = time.monotonic()
            reader, writer = await _tls(sock, address, url, spec, state)
            details["tls_seconds"] = time.monotonic() - began
        else:
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_HEAD_BYTES)
        state.phase = "sending the request"
        writer.write(_request(url, spec.method.upper()))
        await writer.drain()
        sent = time.monotonic()
        state.phase = "waiting for the response"
        response = await _read_head(reader, state, sent)
        details["status"] = response.status
        details["status_reason"] = response.reason
        state.phase = "reading the body"
        details["body_bytes"], details["body_truncated"] = await _read_body(
            reader, response, spec
        )
        return response
    except (ConnectionResetError, BrokenPipeError):
        raise _Fail(f"connection reset by the server while {state.phase}") from None
    except ssl.SSLError as exc:
        raise _Fail(f"TLS error while {state.phase} ({exc.reason or exc})") from None
    except TimeoutError:
        raise
    except OSError as exc:
        raise _Fail(f"{connect_failure(exc)} while {state.phase}") from None
    finally:
        abort(sock, writer)


async def _tls(
    sock: socket.socket, address: str, url: Url, spec: HttpSpec, state: _State
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TLS handshake on ``sock``; records the certificate, raises _Fail with the reason."""
    details = state.details
    context = tls_context(spec.verify_tls, spec.ca_file)
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=url.host, limit=MAX_HEAD_BYTES
        )
    except ssl.SSLCertVerificationError as exc:
        details["tls_verified"] = False
        # The handshake gives no certificate when it fails; fetch it unverified, on a
        # second connection, for the dates and names the reason should give.
        sock.close()
        cert = await fetch_cert(address, url.port, url.host, state.deadline)
        _record_cert(state, cert)
        raise _Fail(describe_verify_error(exc, cert, url.host)) from None
    except ssl.SSLError as exc:
        raise _Fail(tls_failure(exc)) from None
    except TimeoutError:
        raise
    except (ConnectionError, OSError) as exc:
        raise _Fail(f"{connect_failure(exc)} in the TLS handshake") from None
    cert, version = peer_cert(writer)
    details["tls_verified"] = state.verified = spec.verify_tls
    details["tls_version"] = version
    _record_cert(state, cert)
    return reader, writer


_TLS_KEYS = ("tls_verified", "tls_version", "tls_seconds", "cert_not_after",
             "cert_expires_in_seconds", "cert_subject", "cert_issuer")  # fmt: skip


def _record_cert(state: _State, cert: CertInfo | None) -> None:
    state.cert = cert
    if cert is None:
        return
    details = state.details
    details["cert_not_after"] = int(cert.not_after)
    details["cert_expires_in_seconds"] = cert.not_after - time.time()
    details["cert_subject"] = cert.subject
    details["cert_issuer"] = cert.issuer


def _request(url: Url, method: str) -> bytes:
    lines = [
        f"{method} {url.target} HTTP/1.1",
        f"Host: {url.host_header}",
        f"User-Agent: bridgemon/{__version__}",
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


async def _read_head(reader: asyncio.StreamReader, state: _State, sent: float) -> _Response:
    """Status line and headers (skipping 1xx); notes the time to the first byte."""
    buf = bytearray()
    first_byte: float | None = None
    interim = 0
    searched = 0
    while True:
        end = _HEAD_END.search(buf, max(0, searched - 3))
        if end is not None:
            response = _parse_head(bytes(buf[: end.start()]), bytes(buf[end.end() :]))
            if 100 <= response.status < 200 and response.status != 101 and interim < MAX_INTERIM:
                interim += 1
                buf = bytearray(response.rest)
                searched = 0
                continue
            return response
        searched = len(buf)
        if len(buf) > MAX_HEAD_BYTES:
            raise _Fail(f"response headers larger than {MAX_HEAD_BYTES // 1024} KiB")
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            if not buf:
                raise _Fail("connection closed without a response")
            raise _Fail("connection closed in the middle of the response headers")
        if first_byte is None:
            first_byte = time.monotonic()
            state.details["ttfb_seconds"] = first_byte - sent
            state.phase = "reading the response headers"
        buf += chunk


def _parse_head(head: bytes, rest: bytes) -> _Response:
    lines = head.decode("iso-8859-1").replace("\r\n", "\n").split("\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip())
    if match is None:
        shown = "".join(c if c.isprintable() else "." for c in lines[0][:40])
        raise _Fail(f"not an HTTP response (it starts with {shown!r})")
    headers: dict[str, str] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:  # obsolete line folding
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not _TOKEN.fullmatch(name):
            raise _Fail(f"malformed response header {line[:60]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    return _Response(int(match.group(3)), (match.group(4) or "").strip(), headers, rest)


class _BodyReader:
    """The stream, with the bytes already read past the head served first."""

    def __init__(self, reader: asyncio.StreamReader, rest: bytes) -> None:
        self._reader = reader
        self._rest = bytearray(rest)

    async def read(self, n: int) -> bytes:
        if self._rest:
            out = bytes(self._rest[:n])
            del self._rest[:n]
            return out
        return await self._reader.read(n)

    async def readline(self, cap: int) -> bytes:
        """One CRLF-terminated line (for chunk sizes), at most ``cap`` bytes."""
        line = bytearray()
        while not line.endswith(b"\n"):
            if len(line) > cap:
                raise _Fail("malformed chunked body (chunk size line too long)")
            byte = await self.read(1)
            if not byte:
                raise _Fail("connection closed in the middle of a chunked body")
            line += byte
        return bytes(line)


async def _read_body(
    reader: asyncio.StreamReader, response: _Response, spec: HttpSpec
) -> tuple[int, bool]:
    """Read (and drop) the body, at most ``spec.max_body_bytes``: (bytes read, truncated)."""
    status = response.status
    if spec.method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0, False
    cap = max(0, spec.max_body_bytes)
    body = _BodyReader(reader, response.rest)
    headers = response.headers
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(body, cap)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0].strip())
            if length < 0:
                raise ValueError
        except ValueError:
            raise _Fail(f"bad Content-Length {headers['content-length'][:40]!r}") from None
        got = 0
        while got < min(length, cap):
            chunk = await body.read(min(READ_SIZE, min(length, cap) - got))
            if not chunk:
                raise _Fail(f"connection closed after {got} of {length} body bytes")
            got += len(chunk)
        return got, length > cap
    got = 0  # no length: the body runs until the server closes
    while got < cap:
        chunk = await body.read(min(READ_SIZE, cap - got))
        if not chunk:
            return got, False
        got += len(chunk)
    return got, True


async def _read_chunked(body: _BodyReader, cap: int) -> tuple[int, bool]:
    got = 0
    while True:
        line = (await body.readline(MAX_CHUNK_LINE)).split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise _Fail(f"malformed chunked body (chunk size {line[:20]!r})") from None
        if size == 0:
            return got, False  # trailers and the final CRLF are not worth waiting for
        left = size
        while left > 0:
            if got >= cap:
                return got, True
            chunk = await body.read(min(READ_SIZE, left, cap - got))
            if not chunk:
                raise _Fail("connection closed in the middle of a chunked body")
            got += len(chunk)
            left -= len(chunk)
        if got >= cap:
            return got, True
        await body.readline(MAX_CHUNK_LINE)  # the CRLF after the chunk data
