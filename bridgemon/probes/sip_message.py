"""SIP messages for the OPTIONS check: building the request, parsing what comes back.

Pure functions and data, no I/O: :func:`build_options` makes a well-formed RFC 3261
OPTIONS request; :func:`parse` turns received bytes into a :class:`SipMessage` or raises
:class:`SipParseError` whose message is a reason a technician can read.

The parser is for untrusted input from devices of every vintage: compact header names
(``v``, ``i``, ``f``, ``t``, ``l``, ``m`` ...), any case, folded (continued) header lines,
bare-LF line ends, leading keep-alive CRLFs, non-UTF-8 bytes. It caps what it accepts
(:data:`MAX_MESSAGE_BYTES`, :data:`MAX_HEADERS`) and must never raise anything but
SipParseError, whatever the bytes (tests fuzz it).

Must not: do I/O, keep state between calls, or trust a Content-Length.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from bridgemon.probes.device_text import device_text

MAX_MESSAGE_BYTES = 32 * 1024  # a datagram or stream message larger than this is refused
MAX_HEADERS = 256

#: RFC 3261 §7.3.3 and later RFCs: compact form -> full name (lower case).
COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches of RFC 3261 stacks start with it

_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
# ASCII: \d would take any Unicode digit.
_STATUS_LINE = re.compile(r"SIP/(\d+\.\d+) +(\d{3})(?: (.*))?", re.IGNORECASE | re.ASCII)
_REQUEST_LINE = re.compile(
    r"([A-Za-z0-9.!%*_+`'~-]+) +(\S+) +SIP/(\d+\.\d+)", re.IGNORECASE | re.ASCII
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): that takes "²", which int() refuses


class SipParseError(ValueError):
    """Bytes that are not a SIP message we accept; the message says why, briefly."""


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A parsed SIP request or response.

    ``headers`` keeps every header in order, with full lower-case names (compact forms
    expanded) and folded lines joined. ``truncated``: the Content-Length promised more
    body than arrived (a stream caller then reads the rest; over UDP it is a damaged
    datagram, but still proof that a SIP stack answered).
    """

    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status_code: int | None = None  # responses
    reason_phrase: str = ""
    method: str | None = None  # requests
    request_uri: str | None = None
    content_length: int | None = None
    truncated: bool = False

    @property
    def is_response(self) -> bool:
        return self.status_code is not None

    def header(self, name: str) -> str | None:
        """The first value of a header (full or compact name, any case)."""
        key = canonical_name(name)
        for got, value in self.headers:
            if got == key:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [value for got, value in self.headers if got == key]

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str] | None:
        """(number, METHOD) of the CSeq header, or None if absent or malformed."""
        value = self.header("cseq")
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 2 or not _DIGITS.fullmatch(parts[0]) or len(parts[0]) > 10:
            return None
        return int(parts[0]), parts[1].upper()

    @property
    def top_via(self) -> str | None:
        """The topmost Via value (several may share one header line, comma-separated)."""
        value = self.header("via")
        if value is None:
            return None
        return value.split(",", 1)[0].strip()

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter of the topmost Via."""
        via = self.top_via
        return via_param(via, "branch") if via is not None else None


def canonical_name(name: str) -> str:
    lower = name.strip().lower()
    return COMPACT.get(lower, lower)


def via_param(via: str, name: str) -> str | None:
    """A parameter of one Via value (``branch``, ``received``, ``rport``...)."""
    for param in via.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return None


def head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(end of the headers, start of the body) — the first blank line — or None."""
    match = _HEAD_END.search(data, start)
    return (match.start(), match.end()) if match else None


def parse(data: bytes) -> SipMessage:
    """Parse one SIP message (a datagram, or a stream message's head and body).

    Raises SipParseError for anything else; never any other exception.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes, over the {MAX_MESSAGE_BYTES} accepted")
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line
    if not data:
        raise SipParseError("empty message")
    bounds = head_end(data)
    if bounds is None:
        raise SipParseError("incomplete message (no blank line after the headers)")
    # Headers are UTF-8 text (RFC 3261 §7.3); a device sending other bytes is still parsed.
    head = data[: bounds[0]].decode("utf-8", errors="replace")
    rest = data[bounds[1] :]
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    status_code, reason_phrase, method, request_uri = _start_line(start)
    headers = _headers(lines[1:])
    length: int | None = None
    for name, value in headers:
        if name == "content-length":
            if not _DIGITS.fullmatch(value) or len(value) > 9:
                raise SipParseError(f"bad Content-Length {_show(value)}")
            length = int(value)
            break
    body = rest if length is None else rest[:length]
    return SipMessage(
        start_line=start,
        headers=tuple(headers),
        body=bytes(body),
        status_code=status_code,
        reason_phrase=reason_phrase,
        method=method,
        request_uri=request_uri,
        content_length=length,
        truncated=length is not None and len(rest) < length,
    )


def _start_line(line: str) -> tuple[int | None, str, str | None, str | None]:
    """(status code, reason phrase, method, request URI) of a start line."""
    match = _STATUS_LINE.fullmatch(line)
    if match is not None:
        if match.group(1) != "2.0":
            raise SipParseError(f"unsupported SIP version {_show(match.group(1))}")
        code = int(match.group(2))
        if not 100 <= code <= 699:
            raise SipParseError(f"status code {code} out of range")
        return code, (match.group(3) or "").strip(), None, None
    match = _REQUEST_LINE.fullmatch(line)
    if match is not None:
        if match.group(3) != "2.0":
            raise SipParseError(f"unsupported SIP version {_show(match.group(3))}")
        return None, "", match.group(1).upper(), match.group(2)
    raise SipParseError(f"not a SIP message (it starts with {_show(line)})")


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):  # a folded line continues the previous header
            if not headers:
                raise SipParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.fullmatch(name):
            raise SipParseError(f"malformed header line {_show(line)}")
        headers.append((canonical_name(name), value.strip()))
        if len(headers) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} headers")
    return headers


def _show(text: str, limit: int = 40) -> str:
    """A short, clean quotation of untrusted text for a reason."""
    return repr(device_text(text, limit, marked=True))


# --------------------------------------------------------------------------- building


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(local_host: str) -> str:
    return f"{secrets.token_hex(12)}@{local_host.strip('[]')}"


@dataclass(frozen=True, slots=True)
class OptionsRequest:
    """The identifiers of one OPTIONS transaction, to match its responses."""

    data: bytes
    branch: str
    call_id: str
    from_tag: str


def build_options(
    *,
    host: str,
    port: int,
    transport: str,
    local_host: str,
    local_port: int,
    user_agent: str,
    branch: str | None = None,
    call_id: str | None = None,
    from_tag: str | None = None,
) -> OptionsRequest:
    """An OPTIONS request to ``sip:host:port`` sent from ``local_host:local_port``.

    ``host`` and ``local_host`` in URI form (IPv6 in brackets). The Via asks for
    ``rport`` (RFC 3581) so that a stack behind NAT, or one that would answer to the
    Via port, answers to where the request came from.
    """
    branch = branch or new_branch()
    call_id = call_id or new_call_id(local_host)
    from_tag = from_tag or new_tag()
    proto = transport.upper()
    uri = f"sip:{host}:{port}"
    lines = [
        f"OPTIONS {uri} SIP/2.0",
        f"Via: SIP/2.0/{proto} {local_host}:{local_port};rport;branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:bridgemon@{local_host}>;tag={from_tag}",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:bridgemon@{local_host}:{local_port};transport={transport.lower()}>",
        "Accept: application/sdp",
        f"User-Agent: {user_agent}",
        "Content-Length: 0",
    ]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return OptionsRequest(data=data, branch=branch, call_id=call_id, from_tag=from_tag)


def answers(message: SipMessage, request: OptionsRequest) -> bool:
    """Whether ``message`` is a response to ``request`` (RFC 3261 §17.1.3 matching:
    top Via branch and CSeq method; and the Call-ID, as a second check)."""
    cseq = message.cseq
    return (
        message.is_response
        and message.branch == request.branch
        and message.call_id == request.call_id
        and cseq is not None
        and cseq[1] == "OPTIONS"
    )
