"""The ICMP engine against the real kernel on loopback (and routes that fail on purpose)."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bridgemon.probes.pinger import Pinger
from bridgemon.probes.result import EchoBurst
from tests.conftest import add_route, needs_root
from tests.helpers import patches_hot_modules

pytestmark = needs_root


@pytest.fixture
async def pinger() -> AsyncIterator[Pinger]:
    engine = Pinger("raw")
    yield engine
    engine.close()


async def settled(pinger: Pinger) -> int:
    """Open the engine's socket, read what it holds so far, and return the stray count.

    A socket queues what arrives between its creation and the attaching of its kernel
    filter: on a machine where another pinger runs, a few of that pinger's packets. They
    are strays, but not the test's; a test counts the strays its own packets add to this.
    """
    pinger.check()
    # The reply to this echo is queued behind everything that came before it, and a burst
    # ends only once its reply is read: by then the socket holds nothing older.
    assert (await pinger.burst("127.0.0.1", count=1, timeout=1.0)).received == 1
    return pinger.stray_replies


async def test_burst_to_loopback_gets_every_reply(pinger: Pinger) -> None:
    burst = await pinger.burst("127.0.0.1", count=5, spacing=0.02, timeout=0.5)
    assert burst.sent == 5 and burst.received == 5 and burst.error is None
    assert all(0 < rtt < 0.005 for rtt in burst.replied)


async def test_ipv6_loopback(pinger: Pinger) -> None:
    burst = await pinger.burst("::1", count=3, spacing=0.02, timeout=0.5)
    assert burst.received == 3
    assert pinger.modes == {"ipv4": "raw", "ipv6": "raw"} or pinger.modes == {"ipv6": "raw"}


async def test_large_payload(pinger: Pinger) -> None:
    burst = await pinger.burst("127.0.0.1", count=2, spacing=0.01, timeout=0.5, size=1400)
    assert burst.received == 2


async def test_spacing_is_respected(pinger: Pinger) -> None:
    started = time.monotonic()
    burst = await pinger.burst("127.0.0.1", count=4, spacing=0.1, timeout=0.5)
    elapsed = time.monotonic() - started
    assert burst.received == 4
    # Three gaps of 100 ms; ends as soon as the last reply is in, long before the timeout.
    assert 0.29 < elapsed < 0.45


async def test_many_concurrent_bursts_never_cross_talk(pinger: Pinger) -> None:
    targets = [f"127.3.{i // 200}.{i % 200 + 1}" for i in range(600)]
    bursts = await asyncio.gather(
        *(pinger.burst(t, count=3, spacing=0.05, timeout=1.0) for t in targets)
    )
    assert [b.address for b in bursts] == targets
    assert sum(b.received for b in bursts) == 1800
    assert pinger.echoes_sent == 1800 and pinger.echoes_received == 1800


@pytest.mark.skipif(shutil.which("fping") is None, reason="fping missing (.ci/run installs it)")
async def test_another_pinger_on_the_machine_never_reaches_our_socket(pinger: Pinger) -> None:
    import socket

    strays = await settled(pinger)
    # A witness: a raw socket without our filter sees what reached the host meanwhile.
    witness = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    witness.setblocking(False)
    witness.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    targets = [f"127.4.0.{i}" for i in range(1, 101)]
    fping = await asyncio.create_subprocess_exec(
        "fping", "-q", "-C", "20", "-p", "20", "-i", "1", *targets,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        bursts = await asyncio.gather(
            *(pinger.burst(t, count=10, spacing=0.02, timeout=1.0) for t in targets)
        )
    finally:
        await fping.wait()
    foreign = 0
    try:
        while True:
            packet = witness.recv(2048)
            offset = (packet[0] & 0x0F) * 4
            if packet[offset] == 0 and packet[offset + 8 : offset + 16] != pinger._cookie:
                foreign += 1
    except BlockingIOError:
        pass
    finally:
        witness.close()
    assert foreign >= 1000  # fping's replies did reach the host's raw sockets...
    assert sum(b.received for b in bursts) == 1000
    assert pinger.kernel_filtered
    # ...but the kernel kept every one of them from ours
    assert pinger.stray_replies == strays
    assert pinger.receive_drops == 0


@pytest.fixture(params=["raw", "dgram"])
async def either_mode(request: pytest.FixtureRequest) -> AsyncIterator[Pinger]:
    """The engine with a raw socket, then with an unprivileged ping socket (the kernel's
    demultiplexing instead of our filter; its receive timestamps all the same)."""
    path = "/proc/sys/net/ipv4/ping_group_range"
    with open(path) as f:
        original = f.read().strip()
    if request.param == "dgram":
        with open(path, "w") as f:
            f.write(f"{os.getgid()} {os.getgid()}")
    engine = Pinger(request.param)
    try:
        assert engine.check() == request.param
        yield engine
    finally:
        engine.close()
        with open(path, "w") as f:
            f.write(original)


async def test_a_stalled_loop_loses_no_answered_echo(either_mode: Pinger) -> None:
    """The loop blocks for 1.5 s in the middle of the bursts (a slow callback, a heavy
    request, a GC pause): echoes due meanwhile leave late, and each still gets its whole
    timeout from when it actually left; replies that came in meanwhile count by their
    kernel timestamp."""
    pinger = either_mode
    targets = [f"127.5.0.{i}" for i in range(1, 51)]
    bursts = asyncio.gather(
        *(pinger.burst(t, count=5, spacing=0.1, timeout=0.5) for t in targets)
    )
    await asyncio.sleep(0.15)
    time.sleep(1.5)  # blocks the event loop
    done = await bursts
    assert sum(b.received for b in done) == 250
    assert all(rtt is not None and rtt < 0.05 for b in done for rtt in b.rtts)


async def test_a_reply_read_late_counts_by_its_kernel_timestamp(either_mode: Pinger) -> None:
    pinger = either_mode
    burst = asyncio.ensure_future(pinger.burst("127.0.0.1", count=1, timeout=0.3))
    await asyncio.sleep(0)  # the echo leaves in this iteration's flush...
    await asyncio.sleep(0)
    time.sleep(0.8)  # ...and the loop blocks past the timeout before reading the reply
    result = await burst
    assert result.received == 1 and result.rtts[0] is not None and result.rtts[0] < 0.05


async def test_the_socket_is_drained_between_rounds(pinger: Pinger) -> None:
    """A reply that comes after its burst ended (late, or forged to look like ours) is read
    while the engine is idle, not left in the buffer for the next round."""
    import socket

    # The burst reads whatever the new socket queued before its filter (see settled).
    await pinger.burst("127.0.0.1", count=1, timeout=0.3)
    await asyncio.sleep(0.4)  # past the burst's deadline: nothing is scheduled any more
    strays = pinger.stray_replies
    forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        key = (pinger._ident_base << 16) | 7  # passes the kernel filter: ours, not pending
        forger.sendto(_forged_reply("127.0.0.9", key, pinger._cookie), ("127.0.0.1", 0))
        await asyncio.sleep(0.02)  # no tick runs while idle: only the loop's reader reads
    finally:
        forger.close()
    assert pinger.stray_replies == strays + 1


async def test_kernel_drops_are_counted(pinger: Pinger) -> None:
    import socket

    pinger.check()
    (fam,) = pinger._sockets.values()
    fam.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # room for a few replies
    targets = [f"127.6.{i // 200}.{i % 200 + 1}" for i in range(300)]
    bursts = asyncio.gather(*(pinger.burst(t, count=1, timeout=1.0) for t in targets))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    time.sleep(0.3)  # the replies pile up while the loop is blocked
    lost = sum(1 - b.received for b in await bursts)
    assert lost > 0
    # The kernel reports its count with the next reply it queues.
    await pinger.burst("127.0.0.1", count=1, timeout=0.5)
    assert pinger.receive_drops >= lost


async def test_send_error_is_a_result_not_an_exception(
    pinger: Pinger, host_route: list[str]
) -> None:
    add_route(host_route, "unreachable 198.19.254.0/24")
    burst = await pinger.burst("198.19.254.7", count=3, spacing=0.01, timeout=0.2)
    assert burst.received == 0 and burst.sent == 3
    assert burst.error is not None and "No route to host" in burst.error
    # and the engine still works afterwards
    assert (await pinger.burst("127.0.0.1", count=1, timeout=0.5)).received == 1


async def test_silence_times_out(pinger: Pinger, host_route: list[str]) -> None:
    # A blackhole route swallows the echo (the kernel refuses the send: EINVAL); either
    # way the burst must end on time with nothing received.
    add_route(host_route, "blackhole 198.19.253.0/24")
    started = time.monotonic()
    burst = await pinger.burst("198.19.253.7", count=2, spacing=0.05, timeout=0.3)
    assert burst.received == 0
    assert time.monotonic() - started < 1.0


async def test_cancelled_burst_forgets_its_echoes(pinger: Pinger) -> None:
    task = asyncio.ensure_future(pinger.burst("127.0.0.1", count=5, spacing=0.2, timeout=1.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(not fam.pending for fam in pinger._sockets.values())


@patches_hot_modules
async def test_a_started_burst_reports_once_outside_the_tick(pinger: Pinger) -> None:
    results: list[EchoBurst] = []
    inside_tick: list[bool] = []
    tick = pinger._tick

    def watched_tick() -> None:
        inside_tick.append(True)
        try:
            tick()
        finally:
            inside_tick.pop()

    pinger._tick = watched_tick  # type: ignore[method-assign]
    reported = asyncio.Event()

    def done(burst: EchoBurst) -> None:
        assert not inside_tick, "done() ran inside the engine's tick"
        results.append(burst)
        reported.set()

    pinger.start("127.0.0.1", done, count=3, spacing=0.02, timeout=0.5)
    await asyncio.wait_for(reported.wait(), 2)
    await asyncio.sleep(0.1)
    assert len(results) == 1
    assert results[0].address == "127.0.0.1" and results[0].received == 3


async def test_bursts_ending_together_report_a_slice_at_a_time(pinger: Pinger) -> None:
    """Each done() may judge a site: a tick that ends many bursts must not hold the loop
    for all of them at once, and one done() that raises costs nobody else theirs."""
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    reported: list[str] = []
    turns: list[int] = []  # loop turns seen by a ticker while the reports are called
    ticker = [0]

    async def tick_count() -> None:
        while True:
            ticker[0] += 1
            await asyncio.sleep(0)

    def done(burst: EchoBurst) -> None:
        turns.append(ticker[0])
        reported.append(burst.address)
        if burst.address == "127.4.0.7":
            raise RuntimeError("a bug in one done()")
        time.sleep(0.001)  # a site's judging, slowed

    targets = [f"127.4.0.{i}" for i in range(1, 41)]
    counting = asyncio.ensure_future(tick_count())
    try:
        for target in targets:
            pinger.start(target, done, count=1, timeout=0.5)
        for _ in range(200):
            if len(reported) == len(targets):
                break
            await asyncio.sleep(0.01)
    finally:
        counting.cancel()
    assert sorted(reported) == sorted(targets)
    # 40 × 1 ms in slices of 2 ms: the loop turned between them.
    assert len(set(turns)) >= 10, turns
    assert [str(c["exception"]) for c in caught] == ["a bug in one done()"]


@patches_hot_modules
async def test_a_tick_with_many_echoes_due_sends_them_a_slice_at_a_time(
    pinger: Pinger,
) -> None:
    """The echoes a tick finds due are sent about 2 ms of work at a time, the loop turning
    between slices (a tick at 12,000 sites was the loop's longest turn), and so are the
    first echoes of bursts started together (a round that starts late starts hundreds);
    every echo still counts, its RTT taken from when it actually left."""
    turns = [0]

    async def count_turns() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    sends: tuple[list[int], list[int]] = ([], [])  # the turn each first, second echo left in
    send = pinger._send

    def slow_send(burst: Any, index: int) -> None:
        sends[index].append(turns[0])
        time.sleep(0.0002)  # a slow send: 300 of them are 60 ms of work
        send(burst, index)

    pinger._send = slow_send  # type: ignore[method-assign]
    targets = [f"127.6.{i // 250}.{i % 250 + 1}" for i in range(300)]
    counting = asyncio.ensure_future(count_turns())
    try:
        done = await asyncio.gather(
            *(pinger.burst(t, count=2, spacing=0.1, timeout=1.0) for t in targets))
    finally:
        counting.cancel()
    assert sum(b.received for b in done) == 600
    assert all(rtt is not None and rtt < 0.05 for b in done for rtt in b.rtts)
    for turn_of in sends:
        assert len(turn_of) == 300
        assert len(set(turn_of)) >= 10, turn_of  # in one or two turns without slices


async def test_bursts_ending_together_report_a_few_per_turn(pinger: Pinger) -> None:
    """A done() that wakes a task costs little in the engine's slice; the task's work
    comes in the next turn. So few per turn: a national test run woke hundreds of tasks in
    one turn (50-170 ms), and 32 a turn still made turns of 20-30 ms (each task judges and
    reports its site)."""
    turns = [0]

    async def count_turns() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    reported: list[int] = []  # the turn each burst was reported in
    counting = asyncio.ensure_future(count_turns())
    try:
        finished = asyncio.get_running_loop().create_future()
        targets = [f"127.6.{i // 250}.{i % 250 + 1}" for i in range(200)]

        def done(_result: EchoBurst) -> None:
            reported.append(turns[0])
            if len(reported) == len(targets):
                finished.set_result(None)

        for target in targets:
            pinger.start(target, done, count=1, timeout=0.5)
        await asyncio.wait_for(finished, 5)
    finally:
        counting.cancel()
    per_turn = Counter(reported)
    assert max(per_turn.values()) <= 16, per_turn


async def test_a_cancelled_start_never_reports_and_forgets_its_echoes(pinger: Pinger) -> None:
    results: list[EchoBurst] = []
    handle = pinger.start("127.0.0.1", results.append, count=5, spacing=0.1, timeout=0.5)
    await asyncio.sleep(0.15)
    pinger.cancel(handle)
    await asyncio.sleep(0.8)
    assert results == []
    assert all(not fam.pending for fam in pinger._sockets.values())
    pinger.cancel(handle)  # twice is harmless
    # The engine goes on as before.
    assert (await pinger.burst("127.0.0.1", count=2, spacing=0.02, timeout=0.5)).received == 2


async def test_closed_pinger_refuses_work() -> None:
    engine = Pinger("raw")
    await engine.burst("127.0.0.1", count=1, timeout=0.5)
    engine.close()
    with pytest.raises(RuntimeError):
        await engine.burst("127.0.0.1", count=1)


@pytest.fixture
def ping_group_range() -> Iterator[str]:
    path = "/proc/sys/net/ipv4/ping_group_range"
    with open(path) as f:
        original = f.read().strip()
    yield path
    with open(path, "w") as f:
        f.write(original)


async def test_unprivileged_datagram_mode(ping_group_range: str) -> None:
    with open(ping_group_range, "w") as f:
        f.write(f"{os.getgid()} {os.getgid()}")
    engine = Pinger("dgram")
    try:
        assert engine.check() == "dgram"
        burst = await engine.burst("127.0.0.1", count=5, spacing=0.01, timeout=0.5)
        assert burst.received == 5
        burst6 = await engine.burst("::1", count=2, spacing=0.01, timeout=0.5)
        assert burst6.received == 2
    finally:
        engine.close()


def test_no_privilege_gives_a_clear_error(ping_group_range: str) -> None:
    with open(ping_group_range, "w") as f:
        f.write("1 0")
    # Import as root, then drop to nobody: the interpreter may live where nobody can't read.
    code = (
        "import asyncio, os\n"
        "from bridgemon.probes.pinger import Pinger, PingerUnavailable\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "async def main():\n"
        "    try:\n"
        "        Pinger().check()\n"
        "    except PingerUnavailable as exc:\n"
        "        print(exc)\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    message = result.stdout + result.stderr
    assert "CAP_NET_RAW" in message and "ping_group_range" in message and "'1 0'" in message


# -- hostile input: whatever arrives on the socket, the engine goes on ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bridgemon.probes.icmp_packets import checksum  # noqa: E402


def _icmp(icmp_type: int, code: int, rest: bytes) -> bytes:
    header = bytes([icmp_type, code, 0, 0]) + rest
    value = checksum(header)
    return header[:2] + value.to_bytes(2, "big") + header[4:]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    garbage=st.lists(
        st.tuples(st.sampled_from([0, 3, 11, 8, 5, 42]), st.integers(0, 15),
                  st.binary(max_size=120)),
        min_size=1, max_size=8,
    ),
)
def test_garbage_icmp_never_breaks_a_burst(garbage: list[tuple[int, int, bytes]]) -> None:
    """Packets crafted by a second raw socket land on the engine's socket mid-burst."""
    import socket

    async def scenario() -> None:
        engine = Pinger("raw")
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            task = asyncio.ensure_future(
                engine.burst("127.0.0.1", count=4, spacing=0.02, timeout=0.5)
            )
            for icmp_type, code, rest in garbage:
                sender.sendto(_icmp(icmp_type, code, rest), ("127.0.0.1", 0))
                await asyncio.sleep(0.003)
            burst = await task
            assert burst.received == 4 and burst.error is None
        finally:
            sender.close()
            engine.close()

    asyncio.run(scenario())


def _forged_reply(source: str, key: int, cookie: bytes) -> bytes:
    """A whole IPv4 packet (IP_HDRINCL): an echo reply 'from' ``source`` to 127.0.0.1."""

    return _ipv4(source, "127.0.0.1", _icmp(0, 0, key.to_bytes(4, "big") + cookie + bytes(48)))


def _ipv4(source: str, destination: str, icmp: bytes) -> bytes:
    """An IPv4 header (no options, protocol ICMP) in front of ``icmp``."""
    import socket
    import struct

    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
        socket.inet_aton(source), socket.inet_aton(destination),
    ) + icmp


async def test_replies_must_carry_our_cookie_and_come_from_the_target(
    pinger: Pinger, host_route: list[str]
) -> None:
    import socket

    strays = await settled(pinger)
    # Echoes to this range loop back unanswered (not a local address, no forwarding), so
    # they stay outstanding while forged replies arrive.
    add_route(host_route, "198.19.252.0/24 dev lo")
    forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        task = asyncio.ensure_future(
            pinger.burst("198.19.252.9", count=3, spacing=0.05, timeout=0.6)
        )
        await asyncio.sleep(0.01)
        (fam,) = pinger._sockets.values()
        (key,) = list(fam.pending)  # the first echo, outstanding
        wrong_cookie = bytes(b ^ 0xFF for b in pinger._cookie)
        forger.sendto(_forged_reply("198.19.252.9", key, wrong_cookie), ("127.0.0.1", 0))
        forger.sendto(_forged_reply("127.0.0.9", key, pinger._cookie), ("127.0.0.1", 0))
        await asyncio.sleep(2 * pinger.tick)  # replies are read on the engine's tick
        # The wrong cookie never reaches us (the kernel filter); the wrong source does, and
        # is refused.
        assert key in fam.pending and pinger.stray_replies == strays + 1
        # What only the target could send: right source, key and cookie. It counts.
        forger.sendto(_forged_reply("198.19.252.9", key, pinger._cookie), ("127.0.0.1", 0))
        burst = await task
    finally:
        forger.close()
    assert burst.rtts[0] is not None and burst.received == 1


def _forged_error(source: str, target: str, key: int, cookie: bytes, icmp_type: int = 3,
                  code: int = 1) -> bytes:
    """An ICMP error 'from' ``source`` quoting our echo request to ``target``."""

    quoted = _ipv4("127.0.0.1", target, _icmp(8, 0, key.to_bytes(4, "big") + cookie + bytes(8)))
    return _ipv4(source, "127.0.0.1", _icmp(icmp_type, code, bytes(4) + quoted))


async def test_errors_quoting_our_echoes_pass_the_kernel_filter_others_do_not(
    pinger: Pinger, host_route: list[str]
) -> None:
    import socket

    strays = await settled(pinger)
    add_route(host_route, "198.19.251.0/24 dev lo")  # echoes loop back unanswered
    forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        task = asyncio.ensure_future(
            pinger.burst("198.19.251.9", count=1, timeout=0.8)
        )
        await asyncio.sleep(0.01)
        (fam,) = pinger._sockets.values()
        (key,) = list(fam.pending)
        other_ident = key ^ (0x8000 << 16)  # outside our identifier block
        forger.sendto(_forged_error("198.19.251.1", "198.19.251.9", other_ident,
                                    pinger._cookie), ("127.0.0.1", 0))
        forger.sendto(_forged_reply("198.19.251.9", other_ident, pinger._cookie),
                      ("127.0.0.1", 0))
        await asyncio.sleep(2 * pinger.tick)
        assert key in fam.pending and pinger.stray_replies == strays
        forger.sendto(_forged_error("198.19.251.1", "198.19.251.9", key, pinger._cookie),
                      ("127.0.0.1", 0))
        burst = await task
    finally:
        forger.close()
    assert burst.received == 0
    assert burst.error is not None and "host unreachable" in burst.error


async def test_what_queued_before_the_filter_is_discarded_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between socket() and the filter's attaching, another pinger's packets queue up: they
    are dropped unread, not counted as strays nor left to fill the buffer."""
    import socket
    import threading

    from bridgemon.probes import icmp_filter

    foreign = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sending = threading.Event()
    done = threading.Event()

    def other_pinger() -> None:  # echo requests with an identifier that is not ours
        seq = 0
        while not done.is_set():
            seq = (seq + 1) & 0xFFFF
            foreign.sendto(_icmp(8, 0, struct.pack("!HH", 0xBEEF, seq) + b"x" * 16),
                           ("127.0.0.1", 0))
            sending.set()
            time.sleep(0.001)

    attach = icmp_filter.attach

    def slow_attach(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)  # widen the window a busy machine opens anyway
        attach(*args, **kwargs)

    monkeypatch.setattr(icmp_filter, "attach", slow_attach)
    thread = threading.Thread(target=other_pinger)
    thread.start()
    try:
        assert sending.wait(5)
        engine = Pinger("raw")
        try:
            burst = await engine.burst("127.0.0.1", count=1, timeout=1.0)
            assert burst.received == 1
            assert engine.stray_replies == 0
        finally:
            engine.close()
    finally:
        done.set()
        thread.join(5)
        foreign.close()
