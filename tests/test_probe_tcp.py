"""The TCP and H.323 connect checks (bridgemon.probes.tcp), against real sockets.

Loopback listeners give "open", "refused" and (a listener whose accept queue is full, so
the kernel drops our SYN) "timed out"; an unreachable route gives "unreachable"; the lab
gives a filtered H.323 port. Every check must end within its timeout and leave no
descriptor open. Also here: the socket budget (ctx.sockets) at 500 concurrent checks, and
name lookup failing inside a private mount namespace (never the machine's resolver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgemon.lab import Lab
from bridgemon.probes import conn, sip, tcp
from bridgemon.specs import SipSpec, TcpSpec
from tests.conftest import add_route, needs_root
from tests.peers.util import REPO, SLACK, Clock, no_fd_leak, open_fds, probe_ctx, service_lab


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # bound, never listening, then released


@pytest.fixture
def full_listener() -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops further SYNs (a timeout)."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket())
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = int(sock.getsockname()[1])
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        time.sleep(0.05)
        yield port


async def test_open_port_passes_with_connect_time(listener: int) -> None:
    with no_fd_leak():
        result = await tcp.probe("127.0.0.1", TcpSpec("web", port=listener), probe_ctx())
    assert result.ok and result.reason is None
    assert (result.check, result.kind, result.target) == ("web", "tcp", f"127.0.0.1:{listener}")
    assert 0 < result.details["connect_seconds"] <= result.duration < 1
    assert result.details["address"] == "127.0.0.1"
    assert abs(result.started_at - time.time()) < 5


async def test_closed_port_is_refused_and_h323_says_so(closed_port: int) -> None:
    ctx = probe_ctx()
    with no_fd_leak():
        plain = await tcp.probe("127.0.0.1", TcpSpec("p", port=closed_port), ctx)
        h323 = await tcp.probe("127.0.0.1", TcpSpec("h323", port=closed_port, kind="h323"), ctx)
    assert not plain.ok and plain.reason == f"TCP {closed_port}: connection refused"
    assert not h323.ok and h323.reason == f"H.323 {closed_port}: connection refused"
    assert h323.kind == "h323" and "connect_seconds" not in h323.details


async def test_dropped_syn_times_out_within_the_timeout(full_listener: int) -> None:
    with no_fd_leak(), Clock() as clock:
        result = await tcp.probe("127.0.0.1", TcpSpec("t", port=full_listener, timeout=0.8),
                                 probe_ctx())  # fmt: skip
    assert not result.ok
    assert result.reason == f"TCP {full_listener}: timed out after 0.8 s"
    assert 0.8 <= clock.elapsed <= 0.8 + SLACK


async def test_names_resolve_through_the_hosts_file(listener: int) -> None:
    result = await tcp.probe("localhost", TcpSpec("t", port=listener), probe_ctx())
    assert result.ok, result.reason
    assert result.details["address"] in ("127.0.0.1", "::1")


async def test_ipv6_literal(listener: int) -> None:
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        sock.listen(8)
        port = sock.getsockname()[1]
        result = await tcp.probe("::1", TcpSpec("t", port=port), probe_ctx())
    assert result.ok, result.reason
    assert result.target == f"[::1]:{port}"


@needs_root
async def test_unreachable_route_is_its_own_reason(host_route: list[str]) -> None:
    # An "unreachable" route: the kernel refuses to send, nothing leaves the machine.
    add_route(host_route, "unreachable 198.19.254.0/24")
    with no_fd_leak():
        result = await tcp.probe("198.19.254.7", TcpSpec("t", port=443, timeout=2), probe_ctx())
    assert not result.ok
    assert result.reason in ("TCP 443: host unreachable", "TCP 443: network unreachable")


async def test_waiting_for_a_socket_slot_does_not_count_against_the_timeout(
    listener: int,
) -> None:
    ctx = probe_ctx(sockets=1)
    await ctx.sockets.acquire()  # the process is busy: every slot taken
    task = asyncio.create_task(tcp.probe("127.0.0.1", TcpSpec("t", port=listener, timeout=0.2),
                                         ctx))  # fmt: skip
    await asyncio.sleep(0.5)
    assert not task.done()
    ctx.sockets.release()
    result = await asyncio.wait_for(task, 2)
    assert result.ok and result.duration < 0.2


async def test_cancelled_check_releases_its_socket_and_slot(full_listener: int) -> None:
    ctx = probe_ctx(sockets=1)
    with no_fd_leak():
        task = asyncio.create_task(
            tcp.probe("127.0.0.1", TcpSpec("t", port=full_listener, timeout=5), ctx)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not ctx.sockets.locked()


async def test_500_concurrent_checks_never_hold_more_than_64_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On loopback a connect completes inside the syscall, so a check would never be in
    # flight long enough to overlap another. Give each connect 5 ms of "network" after
    # it completes (the socket stays open meanwhile): then 500 checks do overlap, and
    # only the ctx.sockets budget keeps them under 64 open sockets.
    real_connect = conn.connect

    async def slow_connect(address: str, port: int) -> socket.socket:
        sock = await real_connect(address, port)
        try:
            await asyncio.sleep(0.005)
        except BaseException:
            sock.close()
            raise
        return sock

    monkeypatch.setattr(tcp, "connect", slow_connect)
    # Listeners that never accept: the kernel completes the handshakes into their accept
    # queues (deep enough for all), so nothing server-side adds descriptors here.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(4):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            ports.append(int(sock.getsockname()[1]))
        ctx = probe_ctx(sockets=64)
        baseline = open_fds()
        peak = baseline
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            for _ in range(20_000):  # bounded: ~0.5 ms apart, 10 s at most
                peak = max(peak, open_fds())
                if done.is_set():
                    return
                await asyncio.sleep(0.0005)

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        specs = [TcpSpec(f"c{i}", port=ports[i % 4], timeout=5) for i in range(500)]
        results = await asyncio.gather(*(tcp.probe("127.0.0.1", s, ctx) for s in specs))
        elapsed = time.monotonic() - started
        done.set()
        await sampler
    assert [r.reason for r in results if not r.ok] == []
    assert peak - baseline <= 64, f"{peak - baseline} descriptors open at once"
    assert peak - baseline >= 32  # the checks did overlap: the budget was what bound them
    assert elapsed < 10
    assert open_fds() <= baseline


# --------------------------------------------------------------------------- DNS failure

_DNS_SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, {repo!r})
from bridgemon.probes import http, sip, tcp
from bridgemon.specs import HttpSpec, SipSpec, TcpSpec
from tests.peers.util import probe_ctx

async def main():
    name = "diem-cau-tam-ky.example"
    out = []
    for module, spec in ((tcp, TcpSpec("h323", port=1720, kind="h323")),
                         (http, HttpSpec("web", scheme="https")),
                         (sip, SipSpec("sip"))):
        result = await module.probe(name, spec, probe_ctx())
        out.append([result.ok, result.reason, result.duration])
    print(json.dumps(out))

asyncio.run(main())
"""


async def test_a_name_that_is_no_name_is_a_reason_not_a_crash() -> None:
    # "a..b" made the resolver's IDNA encoding raise UnicodeError from inside the check.
    # Refused before any lookup: no query leaves the machine.
    for target in ("a..b", "x" * 64 + ".example"):
        with no_fd_leak():
            result = await tcp.probe(target, TcpSpec("tcp", port=80, timeout=1), probe_ctx())
        assert not result.ok
        assert (result.reason or "").startswith(f"TCP 80: bad host {target!r} ("), result.reason
    sip_result = await sip.probe("a..b", SipSpec("sip", timeout=1), probe_ctx())
    assert sip_result.reason == (
        "SIP OPTIONS: bad host 'a..b' (an empty label: two dots in a row)"
    )


@needs_root
def test_failed_lookup_is_a_reason_naming_the_check(tmp_path: Path) -> None:
    # A private mount namespace whose resolv.conf points at a loopback address where no
    # resolver runs: the lookup fails here, and no query ever leaves the machine.
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.153\noptions timeout:1 attempts:1\n")
    script = tmp_path / "dns.py"
    script.write_text(_DNS_SCRIPT.format(repo=str(REPO)))
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         f"mount --bind {resolv} /etc/resolv.conf && exec {sys.executable} {script}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (h323, web, sip) = json.loads(proc.stdout)
    for (ok, reason, duration), label in ((h323, "H.323 1720"), (web, "HTTPS 443"),
                                          (sip, "SIP OPTIONS")):  # fmt: skip
        assert not ok
        assert reason.startswith(f"{label}: DNS lookup of diem-cau-tam-ky.example "), reason
        assert duration < 3


# --------------------------------------------------------------------------- in the lab

SITE = "198.19.40.10"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with service_lab("--tcp", "1720") as running:
        yield running


@pytest.mark.lab
async def test_lab_filtered_h323_times_out_and_closed_port_is_refused(lab: Lab) -> None:
    spec = TcpSpec("h323", port=1720, kind="h323", timeout=1.0)
    ctx = probe_ctx()
    open_result = await tcp.probe(SITE, spec, ctx)
    assert open_result.ok, open_result.reason
    lab.impair(SITE, drop=["tcp:1720"])
    try:
        with no_fd_leak(), Clock() as clock:
            filtered = await tcp.probe(SITE, spec, ctx)
            closed = await tcp.probe(SITE, TcpSpec("t", port=1721, timeout=1.0), ctx)
    finally:
        lab.clear(SITE)
    assert not filtered.ok and filtered.reason == "H.323 1720: timed out after 1 s"
    assert not closed.ok and closed.reason == "TCP 1721: connection refused"
    assert clock.elapsed <= 1.0 + SLACK + 0.5
