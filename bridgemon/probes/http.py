"""HTTP(S) check: one GET (or HEAD) to a site's web interface, with TLS and certificate.

Holds the probe and its small HTTP/1.1 client over asyncio streams: a request with
``Connection: close``, a bounded read of the status line and headers, then of the body
(Content-Length, chunked or until close), stopping at ``spec.max_body_bytes`` read off
the wire (chunk framing included). Parsing is in :mod:`bridgemon.probes.http_message`.

What it measures (``details``), all in seconds from the probe's own clock:
``connect_seconds`` (TCP handshake), ``tls_seconds`` (TLS handshake),
``ttfb_seconds`` (request written → first byte of the response: the server's think time
plus one round trip, without DNS, connect and TLS), ``total_seconds`` (whole check, DNS
and redirects included, until the last body byte read); plus ``status``,
``status_reason`` (cleaned), ``body_bytes`` (body read, framing not counted; kept up to
date, so a timeout says how much came), ``body_truncated``, and for HTTPS
``tls_verified``, ``tls_version``, ``cert_not_after`` (unix seconds),
``cert_expires_in_seconds``, ``cert_subject``, ``cert_issuer``; ``cert_expiring`` is True
when a verified certificate expires within ``spec.cert_expiry_warn`` (the check still
passes, with a reason saying so — readiness makes that "degraded"). A body cut at the cap
passes with a warning too (see :func:`_read_body` for why). With ``verify_tls`` off the
certificate is reported but never judged: that setting means "this device's certificate
is not ours to trust".

One deadline, ``spec.timeout`` after the check got its socket slot, covers everything —
lookups, connects, TLS, requests, heads, bodies, every redirect — so a device that
trickles cannot stretch it; and the body reader yields to the loop after every read, so
a device that floods cannot hold the loop (and with it that deadline) either.

Why not aiohttp's client, which the web side already uses: it does not give what the
check reports. Its tracing marks one span for connect and TLS together
(``on_connection_create_*``), so ``tls_seconds`` cannot be told from ``connect_seconds``;
a failed verification raises with OpenSSL's error but not the certificate, whose dates and
names the reason gives; it decodes chunked bodies before a reader sees them, so a cap
cannot count the bytes off the wire; a malformed head comes back in llhttp's words (a
200 with a header line "Bad Header" raised ``400, message="Invalid header token"`` here,
aiohttp 3.14, where :mod:`~bridgemon.probes.http_message` says "malformed response header
'Bad Header'"); and it opens and closes sockets itself, so a check could not hold its
``ctx.sockets`` slot until its descriptor is really closed. What is left to write is the
request line and a bounded read, here.

Must not: follow redirects unless ``spec.follow_redirects`` (and then at most
``MAX_REDIRECTS``), read more than the caps, wait past ``spec.timeout`` in total, keep a
connection open after returning, raise for anything the network does, put a device's
bytes in a reason or detail without :func:`~bridgemon.probes.device_text.device_text`,
or touch state and metrics.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

from bridgemon import __version__
from bridgemon.probes import ProbeContext
from bridgemon.probes.conn import (
    CertInfo,
    abort,
    connect,
    describe_verify_error,
    fetch_cert,
    host_for_uri,
    peer_cert,
    tls_context,
)
from bridgemon.probes.device_text import device_text, latin1_text
from bridgemon.probes.failures import (
    ProbeFailure,
    connect_failures,
    handshake_failures,
    map_failures,
    stream_failures,
)
from bridgemon.probes.hosts import check_host
from bridgemon.probes.http_message import (
    MAX_HEAD_BYTES,
    ChunkedDecoder,
    HttpParseError,
    Response,
    body_length,
    head_end,
    is_chunked,
    parse_head,
)
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import HttpSpec

MAX_REDIRECTS = 5
MAX_INTERIM = 5  # 1xx responses skipped before the real one (103 Early Hints, ...)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_SIZE = 16 * 1024


@dataclass(frozen=True, slots=True)
class Url:
    """A split http(s) URL: what to connect to and what to ask for."""

    scheme: str
    host: str  # brackets stripped; a checked name (international names as typed) or IP
    port: int
    target: str  # path and query, at least "/"; ASCII (other characters percent-encoded)

    @property
    def text(self) -> str:
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host_for_uri(self.host)}{port}{self.target}"

    @property
    def host_header(self) -> str:
        """The Host header: the name's ASCII (IDNA) form, as the request line is ASCII."""
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{host_for_uri(check_host(self.host))}{port}"

    @property
    def label(self) -> str:
        """How reasons name the check: "HTTPS 443", "HTTP 8080"."""
        return f"{self.scheme.upper()} {self.port}"


class UrlError(ValueError):
    """A URL split_url refuses: ``why`` names the bad part; the message adds the URL."""

    def __init__(self, url: str, why: str, sep: str = ": ") -> None:
        super().__init__(f"{url!r}{sep}{why}")
        self.url, self.why, self.sep = url, why, sep


def split_url(url: str) -> Url:
    """Parse an http(s) URL; UrlError (a ValueError) naming the bad part otherwise.

    Also the parser of a device's ``Location:``, so it must refuse, never crash: only
    ValueError leaves it, whatever the text (tests fuzz it).
    """
    text = url.strip()
    control = next((i for i, c in enumerate(text) if c < " " or c == "\x7f"), None)
    if control is not None:
        # Said before urlsplit, which would silently drop tabs and line breaks.
        _, _, after = text.partition("://")
        netloc_end = len(text) - len(after) + min(
            (i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after)
        )
        where = "path" if control >= netloc_end else "host"
        raise UrlError(url, f"control characters in the {where}")
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        host = parts.hostname  # lower-cased, brackets stripped
    except ValueError as exc:  # "Invalid IPv6 URL", NFKC look-alikes of "/?#@:"
        raise UrlError(url, f"bad host ({str(exc).lower()})") from None
    if scheme not in DEFAULT_PORTS:
        raise UrlError(url, "is not an http:// or https:// URL", " ")
    if parts.username is not None or parts.password is not None:
        raise UrlError(url, "user names and passwords in the URL are not supported")
    if not host:
        raise UrlError(url, "has no host", " ")
    try:
        check_host(host)
    except ValueError as exc:
        raise UrlError(url, str(exc)) from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UrlError(url, "bad port (a number 1-65535)")
    target = parts.path or "/"
    if not target.startswith("/"):
        target = "/" + target
    if parts.query:
        target += "?" + parts.query
    if " " in target:
        raise UrlError(url, "spaces in the path")
    # The request line is ASCII: other characters go percent-encoded (UTF-8), as browsers do.
    target = "".join(c if c.isascii() else quote(c, safe="", errors="replace") for c in target)
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
    capped: str | None = None  # the body was cut at max_body_bytes: the warning saying so


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
        except ProbeFailure as exc:
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
    """The exchanges (one, or a redirect chain); returns a warning, raises ProbeFailure."""
    redirects: list[str] = []
    while True:
        state.label = url.label
        response = await _exchange(url, spec, ctx, state, len(redirects) < MAX_REDIRECTS)
        location = _location(response, spec)
        if location is None:
            break
        if len(redirects) >= MAX_REDIRECTS:
            raise ProbeFailure(f"more than {MAX_REDIRECTS} redirects (last to {_shown(location)})")
        try:
            url = split_url(urljoin(url.text, location))
        except UrlError as exc:  # the device's text, cleaned: the URL part is quoted anew
            shown = f"{_shown(exc.url)!r}{exc.sep}{device_text(exc.why, 200)}"
            raise ProbeFailure(f"redirect to an unusable URL: {shown}") from None
        redirects.append(url.text)
        state.details["redirects"] = list(redirects)
    details = state.details
    if response.status not in spec.expect_status:
        expected = " or ".join(str(code) for code in spec.expect_status)
        moved = ""
        if response.status in REDIRECT_CODES and "location" in response.headers:
            moved = f" (redirect to {latin1_text(response.headers['location'], 200)})"
        raise ProbeFailure(f"status {response.status}{moved}, expected {expected}")
    warnings = [state.capped] if state.capped else []
    if state.verified and state.cert is not None:
        left = state.cert.not_after - time.time()
        if left <= spec.cert_expiry_warn:
            details["cert_expiring"] = True
            date = state.cert.not_after_date
            warnings.insert(0, f"certificate expires in {_span(left)} ({date})")
    return f"{url.label}: {'; '.join(warnings)}" if warnings else None


def _location(response: Response, spec: HttpSpec) -> str | None:
    """Where a redirect that is to be followed leads (as text), else None."""
    raw = response.headers.get("location")
    if not (spec.follow_redirects and response.status in REDIRECT_CODES and raw):
        return None
    # Header values are kept as ISO-8859-1; a Location with raw non-ASCII is UTF-8 in
    # practice (browsers read it so). Undecodable bytes become U+FFFD, which no host
    # check lets through.
    return raw.encode("iso-8859-1", errors="replace").decode("utf-8", errors="replace")


def _shown(location: str) -> str:
    return device_text(location, 200)


def _span(seconds: float) -> str:
    """"3 days", "1 day", "5 hours" — how long until a certificate expires."""
    days = round(seconds / 86400)
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = max(1, round(seconds / 3600))
    return f"{hours} hour{'s' if hours != 1 else ''}"


async def _exchange(
    url: Url, spec: HttpSpec, ctx: ProbeContext, state: _State, may_follow: bool
) -> Response:
    """One connection: connect, TLS, request, response head and (capped) body.

    The body of a redirect that will be followed is not read: nothing in it matters, and
    the connection closes anyway.
    """
    details = state.details
    for key in _TLS_KEYS:  # a redirect may lead from https to http: no stale TLS facts
        details.pop(key, None)
    state.cert, state.verified = None, False
    state.phase = "looking up the name"
    with map_failures({ResolveError: str}):
        address = await resolve(url.host, min(ctx.resolve_timeout, spec.timeout))
    details["address"] = address
    sock: socket.socket | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        with map_failures({HttpParseError: str,
                           **stream_failures(lambda: f" while {state.phase}")}):
            state.phase = "connecting"
            began = time.monotonic()
            with map_failures(connect_failures()):
                sock = await connect(address, url.port)
            details["connect_seconds"] = time.monotonic() - began
            if url.scheme == "https":
                state.phase = "in the TLS handshake"
                began = time.monotonic()
                reader, writer = await _tls(sock, address, url, spec, state)
                details["tls_seconds"] = time.monotonic() - began
            else:
                reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_HEAD_BYTES)
            state.phase = "sending the request"
            request = _request(url, spec.method.upper())
            # Clock first: once written, the server may answer before this thread runs
            # again, and a clock read after the write would shorten the server's time.
            sent = time.monotonic()
            writer.write(request)
            await writer.drain()
            state.phase = "waiting for the response"
            response = await _read_head(reader, state, sent)
            details["status"] = response.status
            details["status_reason"] = response.reason
            if may_follow and _location(response, spec) is not None:
                return response
            state.phase = "reading the body"
            await _read_body(reader, response, spec, state)
            return response
    finally:
        abort(sock, writer)


async def _tls(
    sock: socket.socket, address: str, url: Url, spec: HttpSpec, state: _State
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TLS handshake on ``sock``; records the certificate, raises ProbeFailure with the
    reason."""
    details = state.details
    context = tls_context(spec.verify_tls, spec.ca_file)
    with map_failures(handshake_failures("", "in the TLS handshake")):
        try:
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=check_host(url.host),
                limit=MAX_HEAD_BYTES,
            )
        except ssl.SSLCertVerificationError as exc:
            details["tls_verified"] = False
            # The handshake gives no certificate when it fails; fetch it unverified, on a
            # second connection, for the dates and names the reason should give.
            sock.close()
            cert = await fetch_cert(address, url.port, url.host, state.deadline)
            _record_cert(state, cert)
            raise ProbeFailure(describe_verify_error(exc, cert, url.host)) from None
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


async def _read_head(reader: asyncio.StreamReader, state: _State, sent: float) -> Response:
    """Status line and headers (skipping 1xx); notes the time to the first byte."""
    buf = bytearray()
    first_byte: float | None = None
    interim = 0
    searched = 0
    while True:
        end = head_end(buf, max(0, searched - 3))
        if end is not None:
            response = parse_head(bytes(buf[: end[0]]), bytes(buf[end[1] :]))
            if 100 <= response.status < 200 and response.status != 101 and interim < MAX_INTERIM:
                interim += 1
                buf = bytearray(response.rest)
                searched = 0
                continue
            return response
        searched = len(buf)
        if len(buf) > MAX_HEAD_BYTES:
            raise ProbeFailure(f"response headers larger than {MAX_HEAD_BYTES // 1024} KiB")
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            if not buf:
                raise ProbeFailure("connection closed without a response")
            raise ProbeFailure("connection closed in the middle of the response headers")
        if first_byte is None:
            first_byte = time.monotonic()
            state.details["ttfb_seconds"] = first_byte - sent
            state.phase = "reading the response headers"
        buf += chunk


class _BodyReader:
    """The stream, with the bytes already read past the head served first."""

    def __init__(self, reader: asyncio.StreamReader, rest: bytes) -> None:
        self._reader = reader
        self._rest = rest

    async def read(self, n: int) -> bytes:
        if self._rest:
            out, self._rest = self._rest[:n], self._rest[n:]
            return out
        data = await self._reader.read(n)
        # A read from a full buffer returns without yielding to the loop; a device that
        # keeps it full would then hold the loop (and this check's deadline) for as long
        # as it likes. Yield once per read: other checks run, and the timeout can fire.
        await asyncio.sleep(0)
        return data


async def _read_body(
    reader: asyncio.StreamReader, response: Response, spec: HttpSpec, state: _State
) -> None:
    """Read (and drop) the body, at most ``spec.max_body_bytes`` off the wire.

    Records ``body_bytes`` (body read, framing not counted) and ``body_truncated`` as it
    goes, so a timeout still says how much came. When the cap cuts the body, the check
    passes with a warning (``state.capped``): the expected status came in time, so the
    web interface answers and the site is not "not ready"; but the answer was not seen to
    its end — a page larger than the cap and a device streaming forever look the same
    here — so it is not silently fine either: readiness shows it degraded, and the
    reason names ``max_body_bytes``, to raise for a large page or to point the check at
    a lighter one. ``max_body_bytes = 0`` reads no body and warns of nothing.
    """
    details = state.details
    details["body_bytes"], details["body_truncated"] = 0, False
    status = response.status
    if spec.method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return
    cap = max(0, spec.max_body_bytes)
    body = _BodyReader(reader, response.rest)
    headers = response.headers
    chunked = ChunkedDecoder() if is_chunked(headers) else None
    length = None if chunked else body_length(headers)
    wire = 0  # bytes of the body read off the connection, chunk framing included
    while True:
        if chunked is not None and chunked.done:
            return
        if length is not None and wire >= length:
            return
        if wire >= cap:
            break
        want = min(READ_SIZE, cap - wire, READ_SIZE if length is None else length - wire)
        data = await body.read(want)
        if not data:
            if chunked is not None:
                raise ProbeFailure("connection closed in the middle of a chunked body")
            if length is not None:
                raise ProbeFailure(f"connection closed after {wire} of {length} body bytes")
            return  # no length: the body ran until the server closed, as it should
        wire += chunked.feed(data) if chunked is not None else len(data)
        details["body_bytes"] = chunked.payload if chunked is not None else wire
    details["body_truncated"] = True
    if cap:
        if length is not None:
            state.capped = (f"response body of {length} bytes is longer than max_body_bytes "
                            f"({_size(cap)}); not read further")  # fmt: skip
        else:
            state.capped = (
                f"response body still coming after {_size(cap)} (max_body_bytes); "
                "not read further"
            )


def _size(n: int) -> str:
    """"64 KiB", "16 MiB", "1000 bytes"."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"
