"""HTTP/1.1 responses from devices, parsed without I/O: the head, and chunked framing.

Holds :func:`parse_head` (status line and headers of a response) and
:class:`ChunkedDecoder` (RFC 9112 §7.1 chunked framing, fed bytes as they arrive), with
:func:`body_length` and :func:`is_chunked` to pick the framing. They face bytes from any
device, so they refuse with :class:`HttpParseError` — whose message is a reason a
technician can read — and never raise anything else, whatever the input (tests fuzz
them). Everything they quote from the device goes through
:func:`bridgemon.probes.device_text.device_text`.

Costs are linear in the bytes given, with no per-byte Python loop, and every line is
bounded: a chunk-size line longer than :data:`MAX_CHUNK_LINE` is a protocol error, so a
device cannot make the check spin on an endless line.

Must not: do I/O, or trust a length the device sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridgemon.probes.device_text import device_text, latin1_text

MAX_HEAD_BYTES = 64 * 1024  # status line + headers; a device sending more is broken
# A chunk-size line is a few hex digits and, very rarely, an extension: no real server
# sends more than a few dozen bytes. Past this the framing is hostile or lost.
MAX_CHUNK_LINE = 256
MAX_SIZE_DIGITS = 16  # leading zeros included: RFC-legal, but 16 already covers 2**64
MAX_CHUNK_SIZE = 2**63 - 1  # what any server's off_t can hold; more is not a real chunk
MAX_LENGTH_DIGITS = 18  # a Content-Length beyond 10**18 bytes is not a real body

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?: (.*))?", re.ASCII)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)  # not int(): it takes "+5", "1_0", "٣"
_HEX = re.compile(rb"[0-9A-Fa-f]+")  # not int(x, 16): it takes "-1", "0x1f", " 1_0"


class HttpParseError(ValueError):
    """Bytes that are not an HTTP/1.1 response we accept; the message says why."""


@dataclass(frozen=True, slots=True)
class Response:
    """A response head. ``reason`` is cleaned for display; ``headers`` keeps lower-case
    names and ISO-8859-1-decoded values (byte for byte), repeated headers joined by ", "."""

    status: int
    reason: str
    headers: dict[str, str]
    rest: bytes  # bytes read past the head: the start of the body


def head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(end of the head, start of the body) — the first blank line — or None."""
    match = _HEAD_END.search(data, start)
    return (match.start(), match.end()) if match else None


def parse_head(head: bytes, rest: bytes = b"") -> Response:
    """The status line and headers in ``head`` (without the blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpParseError(f"response headers larger than {MAX_HEAD_BYTES // 1024} KiB")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if match is None:
        raise HttpParseError(
            f"not an HTTP response (it starts with {device_text(lines[0], 40, marked=True)!r})"
        )
    # Lists, joined once at the end: joining as we go is quadratic in repeated headers.
    found: dict[str, list[list[str]]] = {}
    last: list[str] | None = None  # the parts of the header line being continued
    for raw in lines[1:]:
        line = raw.decode("iso-8859-1")
        if line[:1] in (" ", "\t") and last is not None:  # obsolete line folding
            last.append(line.strip())
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not _TOKEN.fullmatch(name):
            shown = latin1_text(line, 60, marked=True)
            raise HttpParseError(f"malformed response header {shown!r}")
        last = [value.strip()]
        found.setdefault(name, []).append(last)
    headers = {name: ", ".join(" ".join(parts) for parts in each) for name, each in found.items()}
    status = int(match.group(3))
    if status < 100:  # three digits, but no such class: "000" is a broken device
        raise HttpParseError(f"status code {match.group(3).decode()} out of range")
    reason = device_text(match.group(4) or b"", 100)
    return Response(status, reason, headers, bytes(rest))


def is_chunked(headers: dict[str, str]) -> bool:
    """Whether the body is chunked: "chunked" is the last transfer coding (RFC 9112 §6.1)."""
    codings = headers.get("transfer-encoding", "").split(",")
    return codings[-1].strip().lower() == "chunked"


def body_length(headers: dict[str, str]) -> int | None:
    """The Content-Length, or None when there is none (or Transfer-Encoding overrides it)."""
    if "transfer-encoding" in headers or "content-length" not in headers:
        return None
    raw = headers["content-length"]
    values = {value.strip() for value in raw.split(",")}  # "5, 5" is one length said twice
    value = values.pop()
    if values or not _DIGITS.fullmatch(value) or len(value) > MAX_LENGTH_DIGITS:
        raise HttpParseError(f"bad Content-Length {latin1_text(raw, 40, marked=True)!r}")
    return int(value)


class ChunkedDecoder:
    """Chunked framing, checked as bytes arrive: counts the body bytes, finds the end.

    Feed it what the connection gives; :meth:`feed` says how many of those bytes were
    framing or body (all of them, unless the last chunk came). Trailers after the last
    chunk are not waited for: the body is over, the connection closes anyway.
    """

    def __init__(self) -> None:
        self.payload = 0  # body bytes so far, framing not counted
        self.done = False  # the last (zero-size) chunk came
        self._left = 0  # data bytes of the current chunk still to come
        self._after_data = False  # the CRLF that ends a chunk's data is next
        self._line = bytearray()  # a line begun in an earlier feed

    def feed(self, data: bytes) -> int:
        """Consume ``data``; returns how much of it belonged to the body."""
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._left:
                take = min(self._left, end - pos)
                self._left -= take
                self.payload += take
                pos += take
                self._after_data = not self._left
                continue
            # The rest of a line: at most 2 bytes after data (CRLF), else MAX_CHUNK_LINE.
            room = (2 if self._after_data else MAX_CHUNK_LINE + 1) - len(self._line)
            newline = data.find(b"\n", pos, min(end, pos + room))
            if newline < 0:
                if end - pos >= room:
                    raise HttpParseError(self._overlong())
                self._line += data[pos:end]
                return end
            line = bytes(self._line) + data[pos:newline]
            self._line.clear()
            pos = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._after_data:
                if line:
                    raise HttpParseError("malformed chunked body (no line end after a chunk)")
                self._after_data = False
                continue
            size = chunk_size(line)
            if size == 0:
                self.done = True
            self._left = size
        return pos

    def _overlong(self) -> str:
        if self._after_data:
            return "malformed chunked body (no line end after a chunk)"
        return f"malformed chunked body (chunk size line over {MAX_CHUNK_LINE} bytes)"


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (CRLF removed), extensions ignored."""
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(digits):
        shown = device_text(digits, 20, marked=True)
        raise HttpParseError(f"malformed chunked body (chunk size {shown!r})")
    size = int(digits, 16) if len(digits) <= MAX_SIZE_DIGITS else MAX_CHUNK_SIZE + 1
    if size > MAX_CHUNK_SIZE:
        shown = device_text(digits, 20, marked=True)
        raise HttpParseError(f"malformed chunked body (absurd chunk size {shown!r})")
    return size
