"""The STAMP reflector (bridgemon.stamp.reflector) on real loopback sockets.

It must never answer with more octets than it received, keep per-session numbers, stay
within its bounds (sessions, rates, sources) and drop garbage with a counter for each
kind, whatever arrives.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridgemon.stamp import packets, reflector, sockopts
from bridgemon.stamp.reflector import Reflector, ReflectorLimits
from tests.conftest import REPO, needs_root

HOST = "127.0.0.1"


def request(seq: int, size: int = 44, ts: int = 0x0102030405060708) -> bytes:
    return packets.sender_packet(seq, ts, 0x0001, size=size)


class Client:
    """A plain UDP socket speaking to the reflector, as a third-party sender would."""

    def __init__(self, port: int = 0, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_RECVTOS, 1)
        self.sock.bind((host, port))
        self.sock.setblocking(False)

    async def ask(self, target: tuple[str, int], data: bytes, wait: float = 0.3) -> bytes | None:
        self.sock.sendto(data, target)
        answers = await self.collect(wait, limit=1)
        return answers[0] if answers else None

    async def collect(self, wait: float, limit: int = 10_000) -> list[bytes]:
        got: list[bytes] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(got) < limit:
            try:
                got.append(self.sock.recv(70_000))
            except BlockingIOError:
                await asyncio.sleep(0.005)
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def running() -> AsyncIterator[Reflector]:
    async with Reflector([(HOST, 0)]) as refl:
        yield refl


async def test_answers_are_symmetric_and_stateful_per_session(running: Reflector) -> None:
    target = running.addresses[0]
    one, two = Client(), Client()
    try:
        for seq in range(5):
            answer = await one.ask(target, request(seq + 100, size=1200))
            assert answer is not None and len(answer) == 1200
            parsed = packets.parse_reflected(answer)
            assert parsed.seq == seq  # its own count, from 0, per session
            assert parsed.sender_seq == seq + 100
            assert parsed.sender_timestamp == 0x0102030405060708
            assert parsed.sender_ttl == 64  # what the request arrived with
            t2 = packets.ns_from_timestamp(parsed.receive_timestamp, parsed.error_estimate)
            t3 = packets.ns_from_timestamp(parsed.timestamp, parsed.error_estimate)
            assert 0 <= t3 - t2 < 50_000_000 and abs(t2 - time.time_ns()) < 1_000_000_000
        answer = await two.ask(target, request(7))
        assert answer is not None and packets.parse_reflected(answer).seq == 0  # new session
    finally:
        one.close()
        two.close()
    stats = running.stats()
    assert stats["reflected"] == 6 and stats["sessions_active"] == 2
    assert sorted(s["received"] for s in stats["sessions"]) == [1, 5]


async def test_stateless_copies_the_senders_number() -> None:
    async with Reflector([(HOST, 0)], stateful=False) as refl:
        client = Client()
        try:
            answer = await client.ask(refl.addresses[0], request(41))
        finally:
            client.close()
    assert answer is not None and packets.parse_reflected(answer).seq == 41


async def test_the_answer_carries_the_requests_dscp(running: Reflector) -> None:
    client = Client()
    try:
        client.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 34 << 2)  # AF41
        client.sock.sendto(request(1), running.addresses[0])
        for _ in range(100):
            try:
                _, anc, _, _ = client.sock.recvmsg(2048, 64)
                break
            except BlockingIOError:
                await asyncio.sleep(0.005)
        tos = [data[0] for level, kind, data in anc if kind == socket.IP_TOS]
        assert tos == [34 << 2]
    finally:
        client.close()


async def test_short_long_and_twamp_light_requests(running: Reflector) -> None:
    target = running.addresses[0]
    client = Client()
    try:
        for length in (0, 14, 40):  # too short to answer without amplifying
            assert await client.ask(target, request(1)[:length] if length else b"", 0.1) is None
        for length in (41, 42, 43, 44):  # TWAMP-light with symmetric padding, and STAMP
            data = request(1, size=44)[:length]
            answer = await client.ask(target, data)
            assert answer is not None and len(answer) == length
        assert await client.ask(target, request(1, size=9001), 0.1) is None  # over max_packet
    finally:
        client.close()
    stats = running.stats()
    assert stats["dropped_truncated"] == 3 and stats["dropped_oversized"] == 1
    assert stats["reflected"] == 4 and stats["bytes_out"] <= stats["bytes_in"]


async def test_only_allowed_sources_and_no_privileged_source_port() -> None:
    async with Reflector([(HOST, 0)], allow=[ipaddress.ip_network("10.0.0.0/8")]) as refl:
        client = Client()
        try:
            assert await client.ask(refl.addresses[0], request(1), 0.1) is None
        finally:
            client.close()
        assert refl.stats()["dropped_not_allowed"] == 1
    async with Reflector([(HOST, 0)], allow=[ipaddress.ip_network("127.0.0.0/8")]) as refl:
        client = Client()
        try:
            assert await client.ask(refl.addresses[0], request(1)) is not None
        finally:
            client.close()
    if os.geteuid() != 0:
        pytest.skip("binding source port 862 needs root")
    async with Reflector([(HOST, 0)]) as refl:
        # Another reflector's port as source: answering would start a reflector loop.
        looped = Client(port=862, host="127.0.0.86")
        try:
            assert await looped.ask(refl.addresses[0], request(1), 0.1) is None
        finally:
            looped.close()
        assert refl.stats()["dropped_source_port"] == 1


async def test_session_table_is_bounded_and_expires() -> None:
    limits = ReflectorLimits(max_sessions=2, max_sessions_per_source=2, session_idle=0.2)
    async with Reflector([(HOST, 0)], limits=limits) as refl:
        target = refl.addresses[0]
        clients = [Client() for _ in range(3)]
        try:
            assert await clients[0].ask(target, request(1)) is not None
            assert await clients[1].ask(target, request(1)) is not None
            assert await clients[2].ask(target, request(1), 0.1) is None  # table full
            assert refl.stats()["dropped_sessions_full"] == 1
            await asyncio.sleep(0.3)  # both idle past session_idle: the next one fits
            assert await clients[2].ask(target, request(1)) is not None
            assert refl.stats()["sessions_expired"] == 2
        finally:
            for client in clients:
                client.close()


async def test_rate_limits_drop_instead_of_answering() -> None:
    limits = ReflectorLimits(max_pps=100.0, session_pps=1000.0)
    async with Reflector([(HOST, 0)], limits=limits) as refl:
        client = Client()
        try:
            for seq in range(200):  # a burst of 200 against 100/s with a 10-packet burst
                client.sock.sendto(request(seq), refl.addresses[0])
            answers = await client.collect(0.3)
        finally:
            client.close()
        stats = refl.stats()
    assert 10 <= len(answers) <= 10 + 100 * 0.5, len(answers)
    assert stats["dropped_rate_limit"] == 200 - stats["reflected"]
    limits = ReflectorLimits(session_pps=50.0)
    async with Reflector([(HOST, 0)], limits=limits) as refl:
        client = Client()
        try:
            for seq in range(100):
                client.sock.sendto(request(seq), refl.addresses[0])
            answers = await client.collect(0.3)
        finally:
            client.close()
        assert refl.stats()["dropped_session_rate"] >= 100 - 10 - 50 * 0.5


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
async def test_fuzz_whatever_arrives_is_counted_never_amplified(datagrams: list[bytes]) -> None:
    async with Reflector([(HOST, 0)]) as refl:
        client = Client()
        try:
            for data in datagrams:
                client.sock.sendto(data, refl.addresses[0])
            answers = await client.collect(0.05)
        finally:
            client.close()
        stats = refl.stats()
    assert stats["received"] == len(datagrams)
    answerable = [d for d in datagrams if len(d) >= packets.MIN_REFLECTABLE]
    assert len(answers) == stats["reflected"] == len(answerable)
    assert sorted(map(len, answers)) == sorted(map(len, answerable))
    assert stats["dropped_truncated"] == len(datagrams) - len(answerable)


def test_limits_and_listen_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        ReflectorLimits(max_sessions=0)
    with pytest.raises(ValueError, match="max_pps"):
        ReflectorLimits(max_pps=float("nan"))
    assert reflector.parse_listen("0.0.0.0:862") == ("0.0.0.0", 862)
    assert reflector.parse_listen("[::]:8620") == ("::", 8620)
    assert reflector.parse_listen("127.0.0.1") == ("127.0.0.1", 862)
    with pytest.raises(ValueError, match="not an IP address"):
        reflector.parse_listen("site:862")
    with pytest.raises(ValueError, match="port"):
        reflector.parse_listen("127.0.0.1:99999")
    assert str(reflector.parse_allow("10.1.2.3/8")) == "10.0.0.0/8"
    with pytest.raises(ValueError, match="allow"):
        reflector.parse_allow("ten/8")


async def test_a_busy_port_is_a_clear_error() -> None:
    async with Reflector([(HOST, 0)]) as refl:
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+: .*already"):
            await Reflector([refl.addresses[0]]).start()


def test_command_line_runs_and_stops_on_sigterm() -> None:
    assert reflector.main(["--listen", "nowhere"]) == 2
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgemon.stamp.reflector", "--listen", "127.0.0.1:0",
         "--allow", "127.0.0.0/8", "--ready"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready 127.0.0.1:"), line
        port = int(line.split(":")[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(request(3), (HOST, port))
            assert packets.parse_reflected(sock.recv(2048)).sender_seq == 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "reflector stopped" in err and "'reflected': 1" in err


@needs_root
def test_port_862_needs_the_capability_and_says_so() -> None:
    code = ("import sys; from bridgemon.stamp.reflector import main; "
            "sys.exit(main(['--listen', '127.0.0.86:862']))")
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if "Permission denied" in proc.stderr and "python" in proc.stderr.lower():
        pytest.skip("the interpreter is not readable by nobody here")
    assert proc.returncode == 1, proc.stderr
    assert "needs root or CAP_NET_BIND_SERVICE" in proc.stderr


