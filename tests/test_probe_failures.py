"""One exception-to-reason mapping for the HTTP and SIP probes (probes/failures.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bridgemon.probes import http, sip
from bridgemon.probes.dispatch import PROBERS
from bridgemon.probes.failures import (
    ProbeFailure,
    handshake_failures,
    map_failures,
    stream_failures,
)
from bridgemon.specs import CheckSpec, HttpSpec, IcmpSpec, SipSpec
from tests.peers.util import probe_ctx


def test_first_matching_row_wins_and_the_phase_is_read_when_it_fails() -> None:
    phase = ["connecting"]
    table = stream_failures(lambda: f" while {phase[0]}", "TCP 5060: ", "TLS 5061: ")
    phase[0] = "waiting for the answer"
    with pytest.raises(ProbeFailure) as reset, map_failures(table):
        raise ConnectionResetError(104, "Connection reset by peer")
    # ConnectionResetError is an OSError too: its own row comes first.
    assert str(reset.value) == "TCP 5060: connection reset by the server while waiting for " \
                               "the answer"
    with pytest.raises(ProbeFailure) as refused, map_failures(table):
        raise ConnectionRefusedError(111, "Connection refused")
    assert str(refused.value) == "TCP 5060: connection refused while waiting for the answer"


@pytest.mark.parametrize("passing", [TimeoutError(), ProbeFailure("worded already")])
def test_timeouts_and_failures_pass_even_a_catch_all_row(passing: Exception) -> None:
    # A timeout is the probe's to word (it knows the phase); a failure is worded already,
    # so phases nest.
    with pytest.raises(type(passing)) as raised, map_failures({Exception: repr}):
        raise passing
    assert raised.value is passing


def test_what_no_row_names_is_left_alone() -> None:
    # A bug, for dispatch.run_check to report as one.
    with pytest.raises(KeyError), map_failures(handshake_failures("", "in the handshake")):
        raise KeyError("a bug")


def test_every_spec_type_has_a_row_in_the_dispatch_table() -> None:
    assert set(PROBERS) == {IcmpSpec, *CheckSpec.__args__}  # type: ignore[attr-defined]


@pytest.fixture
async def plain_port() -> AsyncIterator[int]:
    """A loopback port that answers anything with plain text, as a web page would."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_http_and_sip_word_a_failed_handshake_alike(plain_port: int) -> None:
    ctx = probe_ctx()
    web = await http.probe("127.0.0.1", HttpSpec(name="web", scheme="https", port=plain_port,
                                                 verify_tls=False, timeout=2.0), ctx)
    codec = await sip.probe("127.0.0.1", SipSpec(name="sip", transport="tls", port=plain_port,
                                                 timeout=2.0), ctx)
    words = "TLS handshake failed (WRONG_VERSION_NUMBER — is this port speaking TLS?)"
    assert web.reason == f"HTTPS {plain_port}: {words}"
    assert codec.reason == f"SIP OPTIONS: TLS {plain_port}: {words}"
