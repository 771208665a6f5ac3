"""SIP message building and parsing (bridgemon.probes.sip_message): pure, and fuzzed.

The parser meets whatever a device (or something that is not one) sends back; for any
bytes it must return a message or raise SipParseError — never another exception.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridgemon.probes.sip_message import (
    COMPACT,
    MAX_HEADERS,
    MAX_MESSAGE_BYTES,
    SipMessage,
    SipParseError,
    answers,
    build_options,
    parse,
)


def options() -> bytes:
    return build_options(
        host="127.0.0.1", port=5060, transport="udp", local_host="127.0.0.1",
        local_port=40000, user_agent="bridgemon/0.1.0", branch="z9hG4bKabc",
        call_id="cid@127.0.0.1", from_tag="ft",
    ).data  # fmt: skip


RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:40000;rport=40000;branch=z9hG4bKabc;received=127.0.0.1\r\n"
    b"From: <sip:bridgemon@127.0.0.1>;tag=ft\r\n"
    b"To: <sip:127.0.0.1:5060>;tag=xyz\r\n"
    b"Call-ID: cid@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Server: Poly RealPresence Group 500\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_options_request_is_well_formed() -> None:
    request = build_options(host="[2001:db8::5]", port=5061, transport="tls",
                            local_host="[2001:db8::1]", local_port=5099,
                            user_agent="bridgemon/0.1.0")  # fmt: skip
    text = request.data.decode()
    assert text.endswith("\r\n\r\n") and "\n" not in text.replace("\r\n", "")
    message = parse(request.data)
    assert message.method == "OPTIONS" and message.request_uri == "sip:[2001:db8::5]:5061"
    assert message.top_via == f"SIP/2.0/TLS [2001:db8::1]:5099;rport;branch={request.branch}"
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{20}", request.branch)
    assert message.header("from") == f"<sip:bridgemon@[2001:db8::1]>;tag={request.from_tag}"
    assert message.header("to") == "<sip:[2001:db8::5]:5061>"
    assert message.call_id == request.call_id and request.call_id.endswith("@2001:db8::1")
    assert message.cseq == (1, "OPTIONS")
    assert message.header("max-forwards") == "70"
    assert message.header("contact") == "<sip:bridgemon@[2001:db8::1]:5099;transport=tls>"
    assert message.header("accept") == "application/sdp"
    assert message.header("user-agent") == "bridgemon/0.1.0"
    assert message.content_length == 0 and message.body == b""
    # Fresh identifiers every time.
    again = build_options(host="h", port=1, transport="udp", local_host="l", local_port=2,
                          user_agent="u")  # fmt: skip
    assert again.branch != request.branch and again.call_id != request.call_id


def test_response_parses_and_matches_its_request() -> None:
    message = parse(RESPONSE)
    assert message.is_response and message.status_code == 200
    assert message.reason_phrase == "OK" and message.branch == "z9hG4bKabc"
    assert message.header("SERVER") == "Poly RealPresence Group 500"
    request = build_options(host="127.0.0.1", port=5060, transport="udp",
                            local_host="127.0.0.1", local_port=40000, user_agent="u",
                            branch="z9hG4bKabc", call_id="cid@127.0.0.1")  # fmt: skip
    assert answers(message, request)
    other = build_options(host="127.0.0.1", port=5060, transport="udp",
                          local_host="127.0.0.1", local_port=40000, user_agent="u",
                          call_id="cid@127.0.0.1")  # other branch  # fmt: skip
    assert not answers(message, other)
    assert not answers(parse(options()), request)  # a request is no answer


def test_compact_names_folding_case_and_bare_newlines() -> None:
    data = (
        b"\r\n\r\nsip/2.0 404 Not  Found\n"
        b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKone,\n"
        b" SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKtwo\n"
        b"i: folded\n\tcall-id\n"
        b"f: <sip:a@b>;tag=1\nt: <sip:c@d>\nCSEQ :  7   options\n"
        b"m: <sip:x@y>\nl: 4\n\nbodyEXTRA"
    )
    message = parse(data)
    assert message.status_code == 404 and message.reason_phrase == "Not  Found"
    assert message.top_via == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKone"
    assert message.branch == "z9hG4bKone"
    assert message.call_id == "folded call-id"
    assert message.cseq == (7, "OPTIONS")
    assert message.header("contact") == "<sip:x@y>" and message.header("m") == "<sip:x@y>"
    assert message.body == b"body" and message.content_length == 4 and not message.truncated
    assert set(COMPACT.values()) >= {"via", "call-id", "from", "to", "content-length"}


def test_short_body_is_marked_truncated() -> None:
    message = parse(RESPONSE.replace(b"Content-Length: 0", b"Content-Length: 50") + b"abc")
    assert message.truncated and message.body == b"abc"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"SIP/2.0 200 OK\r\nVia: x\r\n", "no blank line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "not a SIP message (it starts with 'HTTP/1.1 200 OK')"),
        (b"\x00\xff\xfe garbage\r\n\r\n", "not a SIP message"),
        (b"SIP/3.0 200 OK\r\n\r\n", "unsupported SIP version '3.0'"),
        (b"SIP/2.0 099 Low\r\n\r\n", "status code 99 out of range"),
        (b"SIP/2.0 700 High\r\n\r\n", "status code 700 out of range"),
        (b"SIP/2.0 20 OK\r\n\r\n", "not a SIP message"),
        (b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n", "bad Content-Length '-1'"),
        (b"SIP/2.0 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n", "bad Content-Length"),
        (b"SIP/2.0 200 OK\r\n folded first\r\n\r\n", "continuation line before any header"),
        (b"SIP/2.0 200 OK\r\nno colon\r\n\r\n", "malformed header line 'no colon'"),
        (b"SIP/2.0 200 OK\r\nBad Name: x\r\n\r\n", "malformed header line"),
        (b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", "more than 256"),
        (b"SIP/2.0 200 OK\r\n\r\n" + b"x" * MAX_MESSAGE_BYTES,
         f"message of {MAX_MESSAGE_BYTES + 18} bytes, over the {MAX_MESSAGE_BYTES} accepted"),
    ],
)  # fmt: skip
def test_refusals_say_why(data: bytes, words: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert words in str(info.value)
    assert len(str(info.value)) < 200  # quoted garbage is cut short


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x1b[31mHELLO\x07 \xe2\x80\xaeworld\x1b[0m\r\n\r\n",
         "not a SIP message (it starts with '\ufffdHELLO\ufffd \ufffdworld\ufffd')"),
        (b"SIP/2.0 200 OK\r\nl: \x1b[2J9\r\n\r\n", "bad Content-Length '\ufffd9'"),
        (b"Kh\xc3\xb4ng \xff\xfe ph\xe1\xba\xa3i SIP\r\n\r\n",
         "not a SIP message (it starts with 'Không \ufffd phải SIP')"),
    ],
)  # fmt: skip
def test_quoted_garbage_is_clean_text(data: bytes, reason: str) -> None:
    # Escapes and controls removed whole (no "[31m" left over), a mark where they were (a
    # bare "9" would look like a fine length), UTF-8 shown as such.
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert str(info.value) == reason


def test_missing_headers_are_none_not_errors() -> None:
    message = parse(b"SIP/2.0 200 OK\r\nCSeq: x y z\r\n\r\n")
    assert message.call_id is None and message.branch is None and message.cseq is None
    assert message.top_via is None and message.content_length is None
    assert parse(b"SIP/2.0 200\r\n\r\n").reason_phrase == ""


# --------------------------------------------------------------------------- fuzzing


def _parses_or_refuses(data: bytes) -> SipMessage | None:
    try:
        message = parse(data)
    except SipParseError as exc:
        assert str(exc)
        return None
    # Whatever parsed must be usable by the probe without further surprises.
    _ = (message.call_id, message.cseq, message.branch, message.top_via, message.is_response)
    assert message.status_code is None or 100 <= message.status_code <= 699
    return message


# Bounded per input too: a parser that went quadratic on some input would show here.
DEADLINE = dt.timedelta(milliseconds=500)


@settings(max_examples=400, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_any_bytes(data: bytes) -> None:
    _parses_or_refuses(data)


@settings(max_examples=400, deadline=DEADLINE)
@given(st.data())
def test_fuzz_mutated_responses(data: st.DataObject) -> None:
    raw = bytearray(RESPONSE)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if action == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[pos:pos] = data.draw(st.sampled_from([b"\r\n", b" ", b"\t", b":", b";", b",",
                                                      b"\x00", b"\xff", b"\n\n", b"="]))
        elif action == "delete" and raw:
            del raw[pos : pos + data.draw(st.integers(1, 20))]
        else:
            raw[pos:pos] = raw[pos : pos + data.draw(st.integers(1, 40))]
    _parses_or_refuses(bytes(raw))


_NAMES = {"via": "v", "call-id": "i", "from": "f", "to": "t", "cseq": None,
          "content-length": "l"}  # fmt: skip


@settings(max_examples=150, deadline=DEADLINE)
@given(st.data())
def test_fuzz_header_spellings_keep_the_meaning(data: st.DataObject) -> None:
    """Compact or long names, any case, folded anywhere between words: same message."""
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    call_id = data.draw(st.text(alnum, min_size=1, max_size=16)) + "@host.example"
    code = data.draw(st.integers(100, 699))
    values = {
        "via": "SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bKfuzz",
        "call-id": call_id, "from": "<sip:a@b>;tag=1", "to": "<sip:c@d>",
        "cseq": "1 OPTIONS", "content-length": "0",
    }  # fmt: skip
    lines = [f"SIP/2.0 {code} Some Reason"]
    for name, value in values.items():
        short = _NAMES[name]
        spelled = short if short and data.draw(st.booleans()) else name
        spelled = "".join(c.upper() if data.draw(st.booleans()) else c for c in spelled)
        sep = data.draw(st.sampled_from([":", ": ", " : ", ":\t"]))
        words = value.split(" ")
        text = words[0]
        for word in words[1:]:
            fold = data.draw(st.sampled_from([" ", "\r\n ", "\r\n\t"]))
            text += fold + word
        lines.append(f"{spelled}{sep}{text}")
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert message.status_code == code and message.call_id == call_id
    assert message.branch == "z9hG4bKfuzz" and message.cseq == (1, "OPTIONS")
    assert message.content_length == 0
