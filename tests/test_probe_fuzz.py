"""Regression fuzzing of every parser that meets a device's (or a person's) bytes.

Each parser documents the one error type it may raise; hypothesis feeds it random and
near-valid input and checks that nothing else ever comes out, and that no single input
takes long (``deadline``: a parser that goes quadratic on some input fails here, not in
production as a stalled event loop). Bounded: a few seconds per test.

- ICMP replies (bridgemon.probes.icmp_packets): never raise, ``None`` or a ``Reply``.
- SIP messages (bridgemon.probes.sip_message.parse): SipParseError only.
- HTTP heads and chunked framing (bridgemon.probes.http_message): HttpParseError only;
  chunked decoding gives the same answer however the bytes are split across reads.
- URLs (bridgemon.probes.http.split_url, bridgemon.cli_probe_url.parse_probe_url):
  ValueError only; a host they accept is one the resolver can encode.
- Device text (bridgemon.probes.device_text): never raises, always one clean short line.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.cli_probe_url import parse_probe_url
from bridgemon.probes.device_text import device_text
from bridgemon.probes.hosts import check_host
from bridgemon.probes.http import split_url
from bridgemon.probes.http_message import (
    ChunkedDecoder,
    HttpParseError,
    body_length,
    head_end,
    parse_head,
)
from bridgemon.probes.icmp_packets import Reply, parse_v4, parse_v6
from bridgemon.probes.sip_message import SipParseError, parse
from tests.test_icmp_packets import near_valid_v4, near_valid_v6

# Per input: far above what any of these parsers needs (microseconds to a millisecond),
# far below what a pathological input would cost.
DEADLINE = dt.timedelta(milliseconds=500)


def mutated(draw: st.DrawFn, raw: bytes, alphabet: list[bytes]) -> bytes:
    """``raw`` with a few bytes flipped, inserted, deleted or duplicated."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(0, 6))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.sampled_from(alphabet))
        elif action == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut into pieces at ``cuts``, as reads might deliver it."""
    ends = sorted(min(cut, len(data)) for cut in cuts)
    return [data[a:b] for a, b in zip([0, *ends], [*ends, len(data)], strict=True)]


# --------------------------------------------------------------------------- ICMP


def icmp_ok(result: object) -> None:
    assert result is None or isinstance(result, Reply)


@settings(max_examples=300, deadline=DEADLINE)
@given(st.binary(max_size=1500), st.booleans())
def test_icmp_any_bytes(packet: bytes, has_header: bool) -> None:
    icmp_ok(parse_v4(packet, has_ip_header=has_header))
    icmp_ok(parse_v6(packet))


@settings(max_examples=300, deadline=DEADLINE)
@given(near_valid_v4(), near_valid_v6())
def test_icmp_near_valid(case: tuple[bytes, bool], packet6: bytes) -> None:
    packet, has_header = case
    icmp_ok(parse_v4(packet, has_ip_header=has_header))
    icmp_ok(parse_v6(packet6))


# --------------------------------------------------------------------------- SIP

SIP_RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKabc\r\n"
    b"From: <sip:bridgemon@127.0.0.1>;tag=ft\r\nTo: <sip:127.0.0.1>;tag=x\r\n"
    b"Call-ID: cid@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nServer: Codec \xc4\x91i\xe1\xbb\x83m\r\n"
    b"l: 4\r\n\r\nbody"
)
SIP_BITS = [b"\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"\x00", b"\xff", b"\x1b[", b"\r\n "]


@st.composite
def sip_input(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    return mutated(draw, SIP_RESPONSE, SIP_BITS)


@settings(max_examples=400, deadline=DEADLINE)
@given(sip_input())
def test_sip_parser_refuses_only_with_sip_parse_error(data: bytes) -> None:
    try:
        message = parse(data)
    except SipParseError as exc:
        assert str(exc) and clean(str(exc))
        return
    _ = (message.call_id, message.cseq, message.branch, message.top_via, message.header("x"))
    assert message.status_code is None or 100 <= message.status_code <= 699


# --------------------------------------------------------------------------- HTTP

HTTP_HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: codec\r\nContent-Length: 15\r\nX-A: one\r\n  two\r\n"
    b"Location: /\xc4\x91i\xe1\xbb\x83m\r\nTransfer-Encoding: chunked\r\n"
)
HTTP_BITS = [b"\r\n", b"\n", b" ", b"\t", b":", b",", b"\x00", b"\xff", b"-", b"0", b"00", b"\x1b["]


@st.composite
def http_head(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    return mutated(draw, HTTP_HEAD, HTTP_BITS)


@settings(max_examples=400, deadline=DEADLINE)
@given(http_head())
def test_http_head_parser_refuses_only_with_http_parse_error(head: bytes) -> None:
    try:
        response = parse_head(head, b"")
        length = body_length(response.headers)
    except HttpParseError as exc:
        assert str(exc) and clean(str(exc))
        return
    assert 100 <= response.status <= 999 and clean(response.reason)
    assert length is None or length >= 0
    assert head_end(head + b"\r\n\r\n") is not None


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    """A chunked body written every way servers write them, then maybe damaged."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        data = draw(st.binary(min_size=1, max_size=40))
        digits = f"{len(data):x}"
        digits = "0" * draw(st.integers(0, 3)) + (digits.upper() if draw(st.booleans()) else digits)
        ext = draw(st.sampled_from(["", ";a=1", " ;name", ";q=\"x\""]))
        end = draw(st.sampled_from([b"\r\n", b"\n"]))
        out += digits.encode() + ext.encode() + end + data + end
    out += b"0\r\n" + draw(st.sampled_from([b"\r\n", b"Trailer: x\r\n\r\n", b""]))
    out += draw(st.binary(max_size=8))  # whatever follows the body is not the body's
    raw = bytes(out)
    return raw if draw(st.booleans()) else mutated(draw, raw, [*HTTP_BITS, b"-1", b"0x", b";"])


def decode(pieces: list[bytes]) -> tuple[str, int, bool, int]:
    """Feed the pieces (stopping at the end of the body): (error, payload, done, used)."""
    decoder = ChunkedDecoder()
    used = 0
    try:
        for piece in pieces:
            if decoder.done:
                break
            taken = decoder.feed(piece)
            assert 0 <= taken <= len(piece)
            assert taken == len(piece) or decoder.done
            used += taken
    except HttpParseError as exc:
        assert str(exc) and clean(str(exc))
        return str(exc), 0, False, 0
    assert 0 <= decoder.payload <= used
    return "", decoder.payload, decoder.done, used


@settings(max_examples=400, deadline=DEADLINE)
@given(st.data())
def test_chunked_decoder_refuses_only_with_http_parse_error_however_split(
    data: st.DataObject,
) -> None:
    body = data.draw(chunked_body() | st.binary(max_size=600))
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    assert decode(split(body, cuts)) == decode([body])


@settings(max_examples=200, deadline=DEADLINE)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
def test_chunked_decoder_counts_what_servers_send(chunks: list[bytes]) -> None:
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    error, payload, done, used = decode([body])
    assert (error, payload, done) == ("", sum(map(len, chunks)), True)
    assert used == len(body) - 2  # the trailer section's blank line is not waited for


# --------------------------------------------------------------------------- URLs

URL_CHARS = st.sampled_from(
    [*"abcz09.-_:/?#@[]%;= ", "..", "::", "\x00", "\x1b", "\t", "\n", "\x7f",
     "đ", "ể", "\u202e", "\ufffd", "。", "ａ", "xn--", "１"]
)  # fmt: skip


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "sip", "sips", "tcp", "icmp",
                                   "h323", "ftp", ""]))  # fmt: skip
    sep = draw(st.sampled_from(["://", ":", ":///", "//"]))
    rest = "".join(draw(st.lists(URL_CHARS, max_size=40)))
    return scheme + sep + rest if draw(st.integers(0, 4)) else draw(st.text(max_size=60))


@settings(max_examples=500, deadline=DEADLINE)
@given(urls())
def test_url_parsers_refuse_only_with_value_error(text: str) -> None:
    try:
        url = split_url(text)
    except ValueError as exc:
        assert str(exc)
    else:
        # What it accepts, the resolver and the request line can take as they are.
        check_host(url.host).encode("idna")
        url.host_header.encode("ascii")
        url.target.encode("ascii")
        assert not any(c < " " or c == "\x7f" for c in url.target)
    try:
        parse_probe_url(text)
    except ValueError as exc:
        assert str(exc)


@settings(max_examples=300, deadline=DEADLINE)
@given(st.text(max_size=80))
def test_accepted_hosts_encode_for_the_resolver(host: str) -> None:
    try:
        ascii_host = check_host(host)
    except ValueError as exc:
        assert str(exc).startswith("bad host ")
        return
    assert ascii_host.isascii()
    ascii_host.encode("idna")  # what socket.getaddrinfo does with it: must not raise


# --------------------------------------------------------------------------- device text


def clean(text: str) -> bool:
    return not any(unicodedata.category(c).startswith("C") for c in text)


@settings(max_examples=300, deadline=DEADLINE)
@given(st.binary(max_size=600) | st.text(max_size=300), st.integers(1, 200), st.booleans())
def test_device_text_is_one_clean_short_line(raw: bytes | str, limit: int, marked: bool) -> None:
    text = device_text(raw, limit, marked=marked)
    assert clean(text) and len(text) <= limit
    assert text == text.strip() and "  " not in text and "\ufffd\ufffd" not in text
    assert unicodedata.is_normalized("NFC", text)
