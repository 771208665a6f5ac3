"""Tests of bridgemon.lab: the userspace network emulator.

Real packets, no mocks: the module-scoped ``lab`` fixture builds a real namespace, TUN
devices and forwarder (skipped, with the reason, only where the machine cannot run it),
and fping, a small raw-socket pinger and plain sockets measure what goes through it.

Traffic goes only to the lab ranges, and only while the lab that routes them is up.
Lab names here (bmtest*) never collide with the demo lab (bmlab); the lifecycle tests use
a second, disjoint range so they can run beside the module lab.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridgemon.lab import Lab, LabError, cli, impair, netsetup

NAME = "bmtest"
# A second lab beside the module one: its own range and transfer addresses.
ALT = {"net": "198.19.0.0/24", "host_addr": "198.19.250.2", "lab_addr": "198.19.250.1"}
ALT_ADDR = "198.19.0.5"


def alt_lab(name: str) -> Lab:
    # wait: under pytest-xdist another worker may hold this name; queue behind it.
    return Lab(name, net=ALT["net"], host_addr=ALT["host_addr"], lab_addr=ALT["lab_addr"], wait=60)


def alt_spec(name: str) -> netsetup.LabSpec:
    return alt_lab(name).spec


# Addresses of the module lab (default range 198.18.0.0/16); each test uses its own.
PLAIN = "198.18.1.1"

# --------------------------------------------------------------------------- pure parts
# No root needed: these run everywhere. Tests that need the real lab are marked `lab`.


def test_parse_filter_forms() -> None:
    assert impair.parse_filter("tcp:1720") == impair.PortFilter(6, 1720, 1720)
    assert impair.parse_filter(" UDP:5060-5070 ") == impair.PortFilter(17, 5060, 5070)
    assert impair.parse_filter("tcp") == impair.PortFilter(6)
    assert impair.parse_filter("icmp") == impair.PortFilter(1)
    assert str(impair.parse_filter("udp:5060-5070")) == "udp:5060-5070"
    for bad in ("sctp:1", "tcp:0", "tcp:70000", "tcp:x", "icmp:8", "udp:9-3", ""):
        with pytest.raises(ValueError, match="drop filter"):
            impair.parse_filter(bad)


def test_impairment_validation() -> None:
    imp = impair.Impairment.build(delay_ms=40, jitter_ms=5, loss=0.1, drop="tcp:1720")
    assert imp.to_dict() == {
        "delay_ms": 40.0, "jitter_ms": 5.0, "loss": 0.1, "down": False, "drop": ["tcp:1720"],
        "rate_bps": 0.0, "return_rate_bps": 0.0, "queue_ms": 100.0, "mtu": 0,
        "mtu_blackhole": False,
    }  # fmt: skip
    assert impair.Impairment.from_dict(imp.to_dict()) == imp
    with pytest.raises(ValueError, match="loss"):
        impair.Impairment.build(loss=1.5)
    with pytest.raises(ValueError, match="delay_ms"):
        impair.Impairment.build(delay_ms=-1)
    with pytest.raises(ValueError, match="unknown"):
        impair.Impairment.from_dict({"delay": 3})
    assert impair.parse_target("198.18.2.7/24") == impair.parse_target("198.18.2.0/24")
    with pytest.raises(ValueError, match="IPv4"):
        impair.parse_target("::1")


def _ipv4(dst: str, proto: int, dport: int = 0, frag_offset: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 0, frag_offset, 64, proto, 0,
        socket.inet_aton("198.19.255.254"), socket.inet_aton(dst),
    )  # fmt: skip
    return header + struct.pack("!HHHH", 40000, dport, 8, 0)


def test_rule_table_longest_prefix_wins() -> None:
    table = impair.RuleTable()
    wide = table.set(impair.parse_target("198.18.2.0/24"), impair.Impairment(delay_ms=20))
    narrow = table.set(impair.parse_target("198.18.2.7"), impair.Impairment(delay_ms=5))
    whole = table.set(impair.parse_target("198.18.0.0/16"), impair.Impairment(loss=0.5))
    assert table.lookup(socket.inet_aton("198.18.2.7")) is narrow
    assert table.lookup(socket.inet_aton("198.18.2.200")) is wide
    assert table.lookup(socket.inet_aton("198.18.9.9")) is whole
    assert table.lookup(socket.inet_aton("198.20.0.1")) is None
    assert table.clear(impair.parse_target("198.18.2.7/32")) == 1
    assert table.lookup(socket.inet_aton("198.18.2.7")) is wide  # cache invalidated
    assert table.clear() == 2
    assert table.lookup(socket.inet_aton("198.18.2.7")) is None


def test_filters_match_destination_port_and_protocol() -> None:
    filters = tuple(impair.parse_filter(f) for f in ("tcp:1720", "udp:5060-5061", "icmp"))
    assert impair.filter_matches(filters, _ipv4("198.18.1.1", 6, 1720))
    assert not impair.filter_matches(filters, _ipv4("198.18.1.1", 6, 1721))
    assert impair.filter_matches(filters, _ipv4("198.18.1.1", 17, 5061))
    assert not impair.filter_matches(filters, _ipv4("198.18.1.1", 17, 1720))
    assert impair.filter_matches(filters, _ipv4("198.18.1.1", 1))
    # A non-first fragment has no ports: only protocol-wide filters can match it.
    assert not impair.filter_matches(filters, _ipv4("198.18.1.1", 6, 1720, frag_offset=100))
    assert impair.filter_matches((impair.PortFilter(6),), _ipv4("198.18.1.1", 6, 0, 100))


def test_decide_order_and_jitter_bounds() -> None:
    rng = random.Random(1)
    pkt = _ipv4("198.18.1.1", 6, 1720)
    net = impair.parse_target("198.18.1.1")
    down = impair.Rule(net, impair.Impairment.build(down=True, drop=["tcp:1720"]))
    assert impair.decide(down, pkt, rng)[0] == impair.DROP_DOWN
    filt = impair.Rule(net, impair.Impairment.build(loss=1.0, drop=["tcp:1720"]))
    assert impair.decide(filt, pkt, rng)[0] == impair.DROP_FILTER
    lossy = impair.Rule(net, impair.Impairment.build(loss=1.0, delay_ms=10))
    assert impair.decide(lossy, pkt, rng)[0] == impair.DROP_LOSS
    jittery = impair.Rule(net, impair.Impairment.build(delay_ms=2, jitter_ms=5))
    delays = [impair.decide(jittery, pkt, rng) for _ in range(2000)]
    values = [d for kind, d in delays if kind == impair.DELAY]
    assert all(0.0 <= d <= 0.007 for d in values)  # clamped at 0, at most delay+jitter
    assert sum(kind == impair.FORWARD for kind, _ in delays) > 100  # clamped to zero
    assert jittery.counters["matched"] == 2000


# --------------------------------------------------------------------------- helpers


def fping(
    addrs: list[str], count: int, *, period_ms: int = 10, timeout_ms: int = 1000
) -> dict[str, list[float | None]]:
    """RTTs in ms per address (None = no reply), measured by fping, an independent pinger."""
    argv = ["fping", "-C", str(count), "-p", str(period_ms), "-i", "1",
            "-t", str(timeout_ms), "-q", *addrs]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    result: dict[str, list[float | None]] = {}
    for line in proc.stderr.splitlines():
        addr, sep, values = line.partition(" : ")
        if sep:
            result[addr.strip()] = [None if v == "-" else float(v) for v in values.split()]
    assert set(result) == set(addrs), proc.stderr
    return result


def replies(rtts: list[float | None]) -> list[float]:
    return [r for r in rtts if r is not None]


def _echo(ident: int, seq: int, size: int = 56) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + bytes(size)
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; absent in 3.11


def raw_ping(addr: str, count: int, interval: float = 0.02) -> list[float]:
    """Sequential echoes; RTT = kernel receive timestamp of the reply - send time.

    The kernel stamps the reply (SO_TIMESTAMPNS) when it reaches the socket, so neither
    this process's wake-up from idle (~0.1-0.3 ms in a VM) nor its scheduling under CPU
    load enters the figure: it measures the path, which is what the lab adds to.
    """
    ident = (os.getpid() + 7) & 0xFFFF
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for seq in range(count):
            begin = time.monotonic()
            sent_at = time.time()  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
            sock.sendto(_echo(ident, seq), (addr, 0))
            while (left := 1.0 - (time.monotonic() - begin)) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, anc, _, src = sock.recvmsg(2048, 64)
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
                if kind == 0 and rid == ident and rseq == seq and src[0] == addr:
                    stamps = [d for lvl, typ, d in anc if typ == SO_TIMESTAMPNS]
                    sec, nsec = struct.unpack("qq", stamps[0][:16])
                    rtts.append((sec + nsec / 1e9 - sent_at) * 1000.0)
                    break
            time.sleep(max(0.0, interval - (time.monotonic() - begin)))
    return rtts


def flood(addrs: list[str], pps: int, seconds: float) -> tuple[int, int, float]:
    """Send ``pps`` echoes/s round-robin for ``seconds``; return (sent, replies, elapsed)."""
    ident = (os.getpid() + 11) & 0xFFFF
    received = 0
    done = threading.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    def receive() -> None:
        nonlocal received
        while not done.is_set():
            if select.select([sock], [], [], 0.05)[0]:
                data = sock.recv(4096)
                ihl = (data[0] & 0x0F) * 4
                if data[ihl] == 0 and struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] == ident:
                    received += 1

    thread = threading.Thread(target=receive)
    thread.start()
    total = int(pps * seconds)
    packets = [_echo(ident, i & 0xFFFF) for i in range(total)]
    start = time.perf_counter()
    sent = 0
    try:
        # Send what is due, then sleep a little: sleeping releases the GIL so that the
        # receiving thread keeps up (a busy-wait here starves it, not the lab).
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * pps) + 1)
            while sent < due:
                sock.sendto(packets[sent], (addrs[sent % len(addrs)], 0))
                sent += 1
            time.sleep(0.0005)
        elapsed = time.perf_counter() - start
        time.sleep(0.3)
    finally:
        done.set()
        thread.join()
        sock.close()
    return total, received, elapsed


def binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """Central interval [lo, hi] holding ``confidence`` of Binomial(n, p)."""
    tail = (1.0 - confidence) / 2.0
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= tail:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf[hi] <= tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def tcp_connects(addr: str, port: int, timeout: float = 0.5) -> bool | None:
    """True: connected; False: refused (closed port); None: timed out (filtered)."""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return False
    except TimeoutError:
        return None


def udp_echo(addr: str, port: int, timeout: float = 0.4) -> bytes | bool | None:
    """The echoed datagram; None if nothing came back; False if refused (closed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((addr, port))
        sock.send(b"OPTIONS")
        try:
            return sock.recv(2048)
        except ConnectionRefusedError:
            return False
        except TimeoutError:
            return None


def no_trace(spec: netsetup.LabSpec, pid: int | None, *, routes: bool = True) -> list[str]:
    """What is left of a lab: namespace, devices, routes, forwarder, files (empty: none)."""
    left: list[str] = []
    if netsetup.netns_exists(spec.netns):
        left.append(f"netns {spec.netns}")
    for dev in (spec.host_dev, spec.lab_dev):
        if netsetup.link_exists(dev):
            left.append(f"device {dev}")
    found = netsetup.ip("-4", "-o", "route", "show", "exact", spec.net).strip()
    if routes and found:
        left.append(f"route {found}")
    if pid is not None and Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if stat != "Z":
            left.append(f"process {pid}")
    for path in (spec.socket_path, spec.state_path):
        if path.exists():
            left.append(str(path))
    return left


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    if shutil.which("fping") is None:
        pytest.skip("fping is not installed")
    # wait: a parallel worker using the same name finishes first instead of colliding.
    with Lab(NAME, wait=120) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_rules(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").clear()


@pytest.fixture(scope="module")
def server(lab: Lab) -> Iterator[None]:
    """TCP 8080 + 8081, UDP echo on 5060, SIP on 5062, answering on every lab address."""
    argv = [sys.executable, "-m", "bridgemon.lab.servers", "--tcp", "8080", "--tcp", "8081",
            "--udp-echo", "5060", "--sip", "5062", "--ready"]  # fmt: skip
    proc = lab.spawn(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield
    proc.terminate()
    proc.wait(5)


# --------------------------------------------------------------------------- through the lab


@pytest.mark.lab
def test_available_says_yes_here(lab: Lab) -> None:
    assert Lab.available() == (True, "ok")


@pytest.mark.lab
def test_unimpaired_addresses_answer_fast(lab: Lab) -> None:
    addrs = [PLAIN, "198.18.0.1", "198.18.200.77", "198.18.255.254"]
    result = fping(addrs, 20)
    for addr, rtts in result.items():
        got = replies(rtts)
        assert len(got) == 20, (addr, rtts)
        assert statistics.median(got) < 1.0, (addr, got)


@pytest.mark.lab
def test_delay_40ms_is_accurate(lab: Lab) -> None:
    target = "198.18.1.2"
    base = statistics.median(replies(fping([target], 30, period_ms=5)[target]))
    lab.impair(target, delay_ms=40)
    rtts = replies(fping([target], 30, period_ms=20)[target])
    assert len(rtts) == 30
    assert abs(statistics.median(rtts) - base - 40.0) <= 1.0, (base, rtts)
    # The tighter promise (±0.3 ms on the median), with µs-resolution timing.
    base_raw = statistics.median(raw_ping(PLAIN, 30, 0.005))
    delayed = raw_ping(target, 25, 0.0)
    assert len(delayed) == 25
    assert abs(statistics.median(delayed) - base_raw - 40.0) <= 0.3, (base_raw, delayed)
    assert min(delayed) >= 40.0
    late = lab.status()["release_lateness_us"]
    assert late["samples"] >= 55 and late["p50"] < 100, late


@pytest.mark.lab
def test_jitter_spreads_rtt_around_delay(lab: Lab) -> None:
    target = "198.18.1.3"
    lab.impair(target, delay_ms=20, jitter_ms=10)
    rtts = replies(fping([target], 40, period_ms=5)[target])
    assert len(rtts) == 40
    assert min(rtts) >= 10.0 and max(rtts) <= 31.5, rtts
    assert statistics.pstdev(rtts) > 3.0  # uniform ±10 ms: ~5.8 ms
    assert abs(statistics.mean(rtts) - 20.0) < 3.0


@pytest.mark.lab
def test_loss_is_binomial(lab: Lab) -> None:
    target, n, p = "198.18.1.4", 400, 0.1
    lab.impair(target, loss=p)
    rtts = fping([target], n, period_ms=3, timeout_ms=300)[target]
    lost = sum(r is None for r in rtts)
    lo, hi = binomial_interval(n, p, 0.999)
    assert lo <= lost <= hi, (lost, (lo, hi))
    # Each echo request is decided once; the return path never drops.
    (rule,) = lab.status()["impairments"]
    assert rule["counters"]["dropped_loss"] == lost
    assert rule["counters"]["matched"] == n


@pytest.mark.lab
def test_down_answers_nothing(lab: Lab, server: None) -> None:
    target = "198.18.1.5"
    lab.impair(target, down=True)
    assert replies(fping([target], 5, period_ms=10, timeout_ms=150)[target]) == []
    assert tcp_connects(target, 8080, timeout=0.3) is None
    (rule,) = lab.status()["impairments"]
    assert rule["counters"]["dropped_down"] >= 5
    assert len(replies(fping(["198.18.1.6"], 3)["198.18.1.6"])) == 3  # others unaffected


@pytest.mark.lab
def test_drop_tcp_port_looks_filtered(lab: Lab, server: None) -> None:
    target, other = "198.18.1.7", "198.18.1.8"
    assert tcp_connects(target, 8080) is True
    lab.impair(target, drop=["tcp:8080"])
    assert tcp_connects(target, 8080) is None  # times out, as behind a firewall
    assert tcp_connects(target, 8081) is True  # another port of the same site
    assert tcp_connects(other, 8080) is True  # the same port of another site
    assert tcp_connects(target, 8099) is False  # a closed port is refused, not filtered
    assert len(replies(fping([target], 3)[target])) == 3


@pytest.mark.lab
def test_drop_udp_and_icmp_filters(lab: Lab, server: None) -> None:
    target = "198.18.1.9"
    assert udp_echo(target, 5060) == b"OPTIONS"
    assert udp_echo(target, 5999) is False  # closed: port unreachable comes back
    lab.impair(target, drop=["udp:5060", "icmp"])
    assert udp_echo(target, 5060) is None
    assert udp_echo("198.18.1.10", 5060) == b"OPTIONS"
    assert replies(fping([target], 3, timeout_ms=150)[target]) == []
    assert tcp_connects(target, 8080) is True


@pytest.mark.lab
def test_sip_responder_answers_from_the_site_address(lab: Lab, server: None) -> None:
    request = (
        "OPTIONS sip:198.18.1.11 SIP/2.0\r\nVia: SIP/2.0/UDP 198.19.255.254:5999;branch=z9hG4bK1"
        "\r\nFrom: <sip:mon@bridgemon>;tag=1\r\nTo: <sip:198.18.1.11>\r\nCall-ID: abc\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.connect(("198.18.1.11", 5062))  # connected: replies from elsewhere are dropped
        sock.send(request.encode())
        answer = sock.recv(4096).decode()
    assert answer.startswith("SIP/2.0 200 OK\r\n")
    assert "Call-ID: abc" in answer and "CSeq: 1 OPTIONS" in answer


@pytest.mark.lab
def test_prefix_applies_and_most_specific_wins(lab: Lab) -> None:
    lab.impair("198.18.2.0/24", delay_ms=20)
    lab.impair("198.18.2.7", delay_ms=5)
    lab.impair("198.18.2.9")  # an empty rule exempts one address from the prefix's
    addrs = ["198.18.2.1", "198.18.2.200", "198.18.2.7", "198.18.2.9", "198.18.3.1"]
    med = {a: statistics.median(replies(r)) for a, r in fping(addrs, 10).items()}
    assert 20.0 <= med["198.18.2.1"] < 21.0, med
    assert 20.0 <= med["198.18.2.200"] < 21.0, med
    assert 5.0 <= med["198.18.2.7"] < 6.0, med
    assert med["198.18.2.9"] < 1.0, med
    assert med["198.18.3.1"] < 1.0, med


@pytest.mark.lab
def test_clear_restores(lab: Lab) -> None:
    a, b = "198.18.4.1", "198.18.4.2"
    lab.impair(a, down=True)
    lab.impair(b, down=True)
    assert all(replies(r) == [] for r in fping([a, b], 2, timeout_ms=100).values())
    assert lab.clear(a) == 1
    assert lab.clear(a) == 0
    result = fping([a, b], 2, timeout_ms=100)
    assert len(replies(result[a])) == 2 and replies(result[b]) == []
    assert lab.clear() == 1
    assert all(len(replies(r)) == 2 for r in fping([a, b], 2).values())
    assert lab.status()["impairments"] == []


@pytest.mark.lab
def test_impairment_replaces_rather_than_merges(lab: Lab) -> None:
    target = "198.18.4.3"
    lab.impair(target, down=True)
    rule = lab.impair(target, delay_ms=5)
    assert rule == {**rule, "target": "198.18.4.3/32", "down": False, "delay_ms": 5.0}
    assert len(replies(fping([target], 3)[target])) == 3


@pytest.mark.lab
def test_invalid_impairments_are_refused(lab: Lab) -> None:
    with pytest.raises(ValueError, match="loss"):
        lab.impair(PLAIN, loss=2)
    with pytest.raises(ValueError, match="drop filter"):
        lab.impair(PLAIN, drop=["sctp:9"])
    with pytest.raises(ValueError, match="not an IPv4"):
        lab.impair("site-1", delay_ms=5)
    with pytest.raises(ValueError, match="outside the lab's range"):
        lab.impair("198.81.1.2", delay_ms=5)
    assert lab.status()["impairments"] == []


@pytest.mark.lab
def test_status_counts_both_directions(lab: Lab) -> None:
    before = lab.status()["counters"]
    fping(["198.18.5.1"], 10)
    after = lab.status()["counters"]
    assert after["to_lab"]["received"] - before["to_lab"]["received"] >= 10
    assert after["to_host"]["forwarded"] - before["to_host"]["forwarded"] >= 10
    assert after["to_lab"]["queued"] == 0
    status = lab.status()
    assert status["name"] == NAME and status["pid"] == lab.pid
    assert status["net"] == "198.18.0.0/16" and status["netns"] == NAME


@pytest.mark.lab
def test_throughput_3000_pps_each_way(lab: Lab) -> None:
    delayed = "198.18.6.1"
    lab.impair(delayed, delay_ms=10)
    before = lab.status()["counters"]
    sent, got, elapsed = flood([PLAIN, "198.18.6.2", delayed], 3000, 1.5)
    counters = lab.status()["counters"]
    assert elapsed < 1.5 * 1.1  # the offered load really was ~3000/s
    assert counters["to_lab"]["received"] - before["to_lab"]["received"] >= sent
    assert counters["to_host"]["forwarded"] - before["to_host"]["forwarded"] >= sent
    assert got == sent, (sent, got, counters)
    assert counters["to_lab"]["queued"] == 0
    assert counters["to_lab"]["write_errors"] == before["to_lab"]["write_errors"]
    # A third of 3000 pps held for 10 ms is ~10 packets: the queue must not grow.
    assert counters["to_lab"]["max_queued"] < 60, counters


@pytest.mark.lab
def test_attach_and_cli_steer_the_running_lab(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    with Lab.attach(NAME) as attached:  # an attached handle never tears down on exit
        assert attached.pid == lab.pid
        assert attached.net == lab.net
    assert lab.running

    target = "198.18.7.1"
    assert cli.main(["set", target, "--delay", "15", "--drop", "tcp:1720", "udp:5060",
                     "--name", NAME]) == 0  # fmt: skip
    assert "198.18.7.1/32: delay 15ms, drop tcp:1720,udp:5060" in capsys.readouterr().out
    assert 15.0 <= statistics.median(replies(fping([target], 5)[target])) < 16.0
    assert cli.main(["status", "--json", "--name", NAME]) == 0
    (rule,) = json.loads(capsys.readouterr().out)["impairments"]
    assert rule["drop"] == ["tcp:1720", "udp:5060"]
    assert cli.main(["status", "--name", NAME]) == 0
    assert "delay 15ms" in capsys.readouterr().out
    assert cli.main(["clear", target, "--name", NAME]) == 0
    assert lab.status()["impairments"] == []
    assert cli.main(["exec", "--name", NAME, "--", "ip", "-o", "addr", "show", "lo"]) == 0

    assert cli.main(["set", target, "--loss", "150%", "--name", NAME]) == 2
    assert cli.main(["set", "nowhere", "--name", NAME]) == 2
    assert cli.main(["status", "--name", "bmnosuch"]) == 1
    assert "no lab named 'bmnosuch' is running" in capsys.readouterr().err
    with pytest.raises(LabError, match="no lab named"):
        Lab.attach("bmnosuch")


@pytest.mark.lab
def test_same_name_or_same_range_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="already running"):
        Lab(NAME).start()
    other = Lab("bmtest4")
    with pytest.raises(LabError, match=r"already routed.*lab down --name bmtest"):
        other.start()
    assert no_trace(other.spec, None, routes=False) == []  # the range is the module lab's
    assert lab.running and len(replies(fping([PLAIN], 2)[PLAIN])) == 2
    with pytest.raises(LabError, match=r"must lie inside 198\.18\.0\.0/15"):
        Lab("bmtest4", net="10.0.0.0/24")
    with pytest.raises(LabError, match="invalid"):
        Lab("Bad Name!")


# --------------------------------------------------------------------------- life cycle
# Beside the module lab, on the ALT range. Nothing is sent to a lab once it is down.


@pytest.mark.lab
def test_teardown_leaves_nothing_behind(lab: Lab) -> None:
    second = alt_lab("bmtest2")
    with second:
        assert len(replies(fping([ALT_ADDR], 3)[ALT_ADDR])) == 3
        sleeper = second.spawn(["sleep", "300"])
        orphan = subprocess.Popen(["ip", "netns", "exec", second.netns, "sleep", "300"])
        pid = second.pid
        assert second.status()["net"] == ALT["net"]
    assert sleeper.poll() is not None  # spawned by the lab: terminated by it
    assert orphan.wait(5) is not None  # started by hand in the namespace: ended too
    assert no_trace(second.spec, pid) == []
    assert lab.running  # the module lab was not disturbed


@pytest.mark.lab
def test_stale_leftovers_of_a_killed_lab_are_removed(lab: Lab) -> None:
    spec = alt_spec("bmtest2")
    first = alt_lab("bmtest2").start(detach=True)
    assert first.pid is not None and first._proc is not None
    os.kill(first.pid, signal.SIGKILL)
    first._proc.wait(5)
    # What a kill -9 leaves: the namespace, the state files, the guard route.
    assert netsetup.netns_exists(spec.netns)
    assert spec.state_path.exists()
    assert "unreachable" in netsetup.ip("-4", "-o", "route", "show", "exact", spec.net)
    with pytest.raises(LabError, match="does not answer"):
        Lab.attach("bmtest2")
    with alt_lab("bmtest2") as again:
        assert len(replies(fping([ALT_ADDR], 3)[ALT_ADDR])) == 3
        pid = again.pid
    assert no_trace(spec, pid) == []


@pytest.mark.lab
def test_lab_goes_away_with_its_parent(lab: Lab) -> None:
    spec = alt_spec("bmtest2")
    script = (
        "import time; from bridgemon.lab import Lab\n"
        f"lab = Lab('bmtest2', **{ALT!r}, wait=60).start()\n"
        "print(lab.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert netsetup.netns_exists(spec.netns)
    parent.kill()
    parent.wait(5)
    assert wait_for(lambda: no_trace(spec, pid) == [], 5.0), no_trace(spec, pid)


@pytest.mark.lab
def test_cli_up_and_down_in_the_background(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    spec = alt_spec("bmtest2")
    argv = ["--name", "bmtest2", "--net", ALT["net"], "--host-addr", ALT["host_addr"],
            "--lab-addr", ALT["lab_addr"]]  # fmt: skip
    assert cli.main(["up", "--wait", "60", *argv]) == 0
    out = capsys.readouterr().out
    assert "lab 'bmtest2' is up" in out and "bridgemon lab set --name bmtest2" in out
    state = netsetup.read_state("bmtest2")
    assert state is not None
    pid = state["pid"]
    # Detached: the forwarder is in its own session, not tied to this process.
    assert os.getsid(pid) == pid
    assert len(replies(fping([ALT_ADDR], 2)[ALT_ADDR])) == 2
    assert cli.main(["up", *argv]) == 1  # already running (no --wait: fails at once)
    assert "already running" in capsys.readouterr().err
    assert cli.main(["down", "--name", "bmtest2"]) == 0
    assert "is down" in capsys.readouterr().out
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # our child (Popen in cli.main): reap it
    assert no_trace(spec, pid) == []
    assert cli.main(["down", "--name", "bmtest2"]) == 0
    assert "was not running" in capsys.readouterr().out


@pytest.mark.lab
def test_not_root_is_explained() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    code = "from bridgemon.lab import Lab; print(Lab.available())"
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot run the package as nobody here: {proc.stderr.strip()[-200:]}")
    assert "(False, 'the lab needs root (euid is 65534)" in proc.stdout


@pytest.mark.lab
def test_a_lab_with_wait_queues_behind_another_on_its_range() -> None:
    import threading

    first = alt_lab("bmq1").start()
    started = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with alt_lab("bmq2"):
                started.set()
        except BaseException as exc:  # reported below
            errors.append(exc)

    waiter = threading.Thread(target=second)
    waiter.start()
    try:
        time.sleep(1.5)
        assert not started.is_set()  # queued: the range is bmq1's
    finally:
        first.stop()
    waiter.join(timeout=30)
    assert started.is_set() and not errors
    third = alt_lab("bmq3").start()
    try:
        with pytest.raises(LabError, match="already routed"):  # no wait: refused at once
            Lab("bmq4", net=ALT["net"], host_addr=ALT["host_addr"],
                lab_addr=ALT["lab_addr"]).start()
    finally:
        third.stop()


# --------------------------------------------------------------------------- bandwidth and MTU
# Pure parts first (no root), then through the lab: a thin line passes ping and fails a
# 2 Mbit/s STAMP train with its direction named; a small MTU fails the MTU check.


def _udp_ipv4(size: int, *, df: bool, ident: int = 0x1234) -> bytes:
    """An IPv4/UDP packet of ``size`` octets, host → 198.18.1.1, checksum filled in."""
    payload = bytes(i & 0xFF for i in range(size - 28))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, ident, 0x4000 if df else 0, 64, 17,
                         0, socket.inet_aton("198.19.255.254"), socket.inet_aton("198.18.1.1"))
    header = header[:10] + struct.pack("!H", impair.ip_checksum(header)) + header[12:]
    return header + struct.pack("!HHHH", 40000, 862, size - 20, 0) + payload[8:]


def test_impairment_bandwidth_and_mtu_fields() -> None:
    imp = impair.Impairment.build(rate_bps=1e6, return_rate_bps=512e3, queue_ms=50, mtu=1400,
                                  mtu_blackhole=True)  # fmt: skip
    assert impair.Impairment.from_dict(imp.to_dict()) == imp
    assert imp.describe() == ("rate 1Mbit/s (queue 50ms), return rate 512kbit/s (queue 50ms), "
                              "mtu 1400 (black hole)")
    for bad, match in (({"rate_bps": -1}, "rate_bps"), ({"rate_bps": 100}, "8000"),
                       ({"return_rate_bps": 2e10}, "return_rate_bps"), ({"mtu": 40}, "mtu"),
                       ({"mtu": 1400.5}, "mtu"), ({"queue_ms": 0}, "queue_ms"),
                       ({"mtu_blackhole": True}, "needs an mtu")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            impair.Impairment.build(**bad)  # type: ignore[arg-type]


def test_shaper_delays_before_it_drops() -> None:
    shaper = impair.Shaper(1e6, queue_ms=100)  # 125,000 B/s, backlog up to 12,500 B
    waits: list[float | None] = []
    interval = 1228 * 8 / 2e6  # a 2 Mbit/s train into a 1 Mbit/s link
    for i in range(400):
        waits.append(shaper.admit(1228, i * interval))
    assert waits[0] == 0.0 and waits[1] == 0.0  # the burst: two full frames
    first_drop = waits.index(None)
    queued = [w for w in waits[:first_drop] if w]
    assert queued == sorted(queued) and 0.09 < max(queued) <= 0.1  # it queued first
    accepted = sum(w is not None for w in waits)
    assert accepted == pytest.approx(400 * 0.5, rel=0.1)  # then carries 1 Mbit/s
    assert max(w for w in waits if w is not None) <= 0.1  # never more than the queue
    idle = impair.Shaper(1e6, queue_ms=100)
    assert all(idle.admit(1228, i * 0.02) == 0.0 for i in range(50))  # below the rate


def test_frag_needed_is_what_a_router_sends() -> None:
    pkt = _udp_ipv4(1500, df=True)
    icmp = impair.frag_needed(pkt, 1400, socket.inet_aton("198.19.255.253"))
    assert impair.ip_checksum(icmp[:20]) == 0  # a valid header checksum sums to zero
    assert icmp[9] == 1 and icmp[12:16] == socket.inet_aton("198.19.255.253")
    assert icmp[16:20] == socket.inet_aton("198.19.255.254")  # back to the sender
    kind, code, _, _, mtu = struct.unpack_from("!BBHHH", icmp, 20)
    assert (kind, code, mtu) == (3, 4, 1400)
    assert impair.ip_checksum(icmp[20:]) == 0
    assert icmp[28:] == pkt[:28]  # the original header and 8 octets: the UDP ports


def test_fragment_is_what_a_router_does_without_df() -> None:
    pkt = _udp_ipv4(3000, df=False)
    parts = impair.fragment(pkt, 1400)
    assert len(parts) == 3 and all(len(p) <= 1400 for p in parts)
    assert all(impair.ip_checksum(p[:20]) == 0 for p in parts)
    fields = [struct.unpack_from("!H", p, 6)[0] for p in parts]
    assert [f & 0x2000 for f in fields] == [0x2000, 0x2000, 0]  # more fragments, then last
    assert [(f & 0x1FFF) * 8 for f in fields] == [0, 1376, 2752]
    assert b"".join(p[20:] for p in parts) == pkt[20:]
    assert all(p[4:6] == pkt[4:6] for p in parts)  # same identification


def test_decide_applies_mtu_then_rate() -> None:
    rng = random.Random(1)
    net = impair.parse_target("198.18.1.1")
    icmp = impair.Rule(net, impair.Impairment.build(mtu=1400))
    assert impair.decide(icmp, _udp_ipv4(1500, df=True), rng)[0] == impair.ICMP_MTU
    assert impair.decide(icmp, _udp_ipv4(1500, df=False), rng)[0] == impair.FRAGMENT
    assert impair.decide(icmp, _udp_ipv4(1400, df=True), rng)[0] == impair.FORWARD
    hole = impair.Rule(net, impair.Impairment.build(mtu=1400, mtu_blackhole=True))
    assert impair.decide(hole, _udp_ipv4(1500, df=True), rng)[0] == impair.DROP_MTU
    thin = impair.Rule(net, impair.Impairment.build(rate_bps=1e6, queue_ms=10, delay_ms=5))
    kinds = [impair.decide(thin, _udp_ipv4(1228, df=True), rng, now=0.0) for _ in range(5)]
    assert kinds[0] == (impair.DELAY, 0.005)  # within the burst: only the delay
    assert kinds[2][0] == impair.DELAY and kinds[2][1] > 0.005  # queued behind the burst
    assert kinds[-1][0] == impair.DROP_RATE  # 10 ms of queue is 1250 octets
    back = impair.Rule(net, impair.Impairment.build(return_rate_bps=1e6, queue_ms=10))
    assert [impair.decide_return(back, 1228, 0.0)[0] for _ in range(4)] == [
        impair.FORWARD, impair.FORWARD, impair.DELAY, impair.DROP_RATE]  # fmt: skip
    assert back.counters["return_dropped_rate"] == 1


@pytest.fixture(scope="module")
def reflector(lab: Lab) -> Iterator[None]:
    """bridgemon's STAMP reflector on port 862 of every lab address."""
    argv = [sys.executable, "-m", "bridgemon.stamp.reflector", "--listen", "0.0.0.0:862",
            "--ready"]  # fmt: skip
    proc = lab.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready 0.0.0.0:862")
    yield
    proc.terminate()
    proc.wait(5)


def _train(address: str, **kw: object) -> tuple[Any, Any]:
    """A 2 Mbit/s × 3 s train of 1200-octet packets and its verdict."""
    import asyncio

    from bridgemon.stamp import TrainSpec, judge, run_train

    values: dict[str, object] = {"rate_bps": 2e6, "size": 1200, "duration": 3.0, "wait": 1.0}
    values.update(kw)
    result = asyncio.run(run_train(TrainSpec(address, **values)))  # type: ignore[arg-type]
    return result, judge(result)


@pytest.mark.lab
def test_a_clean_site_passes_ping_the_train_and_the_mtu_check(lab: Lab, reflector: None) -> None:
    import asyncio

    from bridgemon.stamp import probe_pmtu

    site = "198.18.20.1"
    assert len(replies(fping([site], 5)[site])) == 5
    result, verdict = _train(site)
    assert verdict.state == "ready", verdict
    assert result.figures.mode == "stateful" and result.figures.round_trip.lost == 0
    # The answers came from the site's own address although the reflector binds 0.0.0.0.
    assert result.anomalies.foreign == 0
    mtu = asyncio.run(probe_pmtu(site))
    assert mtu.outcome == "ok" and mtu.packet_size == 1500 and mtu.reason is None


@pytest.mark.lab
def test_a_1_mbit_downlink_passes_ping_and_fails_the_train(lab: Lab, reflector: None) -> None:
    site = "198.18.20.2"
    lab.impair(site, rate_bps=1e6)
    assert len(replies(fping([site], 5, period_ms=200)[site])) == 5  # ping sees nothing
    result, verdict = _train(site)
    fig = result.figures
    assert fig.mode == "stateful"
    assert fig.downlink.loss_ratio == pytest.approx(0.5, abs=0.08)
    assert fig.uplink.loss_ratio == pytest.approx(0.0, abs=0.01)
    assert fig.downlink.carried_bps == pytest.approx(1e6, rel=0.1)
    assert verdict.state == "not_ready"
    named = {r.direction for r in verdict.reasons if r.code in ("stamp_loss", "stamp_rate")}
    assert named == {"downlink"}, verdict
    assert any(r.vi.startswith("luồng 2 Mbit/s mất") and "chiều xuống (downlink)" in r.vi
               for r in verdict.reasons)  # fmt: skip
    # Delay before loss: the queue (100 ms at 1 Mbit/s) shows in the round trip.
    assert 0.08 < fig.round_trip.rtt.p95 < 0.13
    (rule,) = lab.status()["impairments"]
    assert rule["counters"]["dropped_rate"] > 0 and rule["counters"]["shaped"] > 0


@pytest.mark.lab
def test_a_1_mbit_uplink_is_named_as_the_uplink(lab: Lab, reflector: None) -> None:
    site = "198.18.20.3"
    lab.impair(site, return_rate_bps=1e6)
    result, verdict = _train(site)
    fig = result.figures
    assert fig.downlink.loss_ratio == pytest.approx(0.0, abs=0.01)
    assert fig.uplink.loss_ratio == pytest.approx(0.5, abs=0.08)
    assert fig.uplink.carried_bps == pytest.approx(1e6, rel=0.1)
    named = {r.direction for r in verdict.reasons if r.code in ("stamp_loss", "stamp_rate")}
    assert named == {"uplink"}, verdict
    assert any("chiều lên (uplink)" in r.vi for r in verdict.reasons)
    assert lab.status()["counters"]["to_host"]["dropped_rate"] > 0


@pytest.mark.lab
def test_mtu_1400_with_icmp_fails_the_mtu_check(lab: Lab, reflector: None) -> None:
    import asyncio

    from bridgemon.stamp import probe_pmtu

    site = "198.18.20.4"
    lab.impair(site, mtu=1400)
    assert len(replies(fping([site], 3)[site])) == 3  # small pings pass
    result = asyncio.run(probe_pmtu(site))
    assert result.outcome == "frag_needed" and result.mtu == 1400
    assert result.reporter == lab.lab_addr and result.state == "not_ready"
    assert result.reason is not None and "path MTU 1400" in result.reason[0]
    assert "MTU đường truyền 1400" in result.reason[1]
    # A train of packets too big for the path says so, with the MTU.
    train, verdict = _train(site, size=1400, duration=0.5)
    assert train.anomalies.path_mtu == 1400
    assert any(r.code == "stamp_mtu" and "path MTU of 1400" in r.en for r in verdict.reasons)
    # Packets that fit go through: the site is fine for 1200-octet video.
    assert _train(site, duration=0.5)[1].state == "ready"


@pytest.mark.lab
def test_an_mtu_black_hole_is_told_from_icmp(lab: Lab) -> None:
    import asyncio

    from bridgemon.stamp import probe_pmtu

    site = "198.18.20.5"
    lab.impair(site, mtu=1400, mtu_blackhole=True)
    result = asyncio.run(probe_pmtu(site, timeout=0.3, search_steps=12))
    assert result.outcome == "black_hole" and result.reporter is None
    assert (result.largest_ok, result.smallest_lost) == (1400, 1401)
    assert result.reason is not None and "hố đen MTU" in result.reason[1]
    (rule,) = lab.status()["impairments"]
    assert rule["counters"]["dropped_mtu"] >= 2 and rule["counters"]["icmp_mtu"] == 0
    down = "198.18.20.6"
    lab.impair(down, down=True)
    assert asyncio.run(probe_pmtu(down, timeout=0.2)).outcome == "no_reply"


@pytest.mark.lab
def test_packets_without_df_are_fragmented(lab: Lab, server: None) -> None:
    site = "198.18.20.7"
    lab.impair(site, mtu=1400)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
        sock.settimeout(1.0)
        sock.connect((site, 5060))
        sock.send(bytes(2000))
        assert sock.recv(4096) == bytes(2000)  # reassembled by the site, echoed back
    (rule,) = lab.status()["impairments"]
    assert rule["counters"]["fragmented"] == 1
    assert lab.status()["counters"]["to_lab"]["fragments"] == 2


@pytest.mark.lab
def test_cli_sets_rate_and_mtu(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    target = "198.18.20.8"
    assert cli.main(["set", target, "--rate", "1M", "--return-rate", "512k", "--queue", "50",
                     "--mtu", "1400", "--mtu-blackhole", "--name", NAME]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == (
        "198.18.20.8/32: rate 1Mbit/s (queue 50ms), return rate 512kbit/s (queue 50ms), "
        "mtu 1400 (black hole)")  # fmt: skip
    (rule,) = lab.status()["impairments"]
    assert (rule["rate_bps"], rule["return_rate_bps"], rule["mtu"]) == (1e6, 512e3, 1400)
    assert cli.main(["status", "--name", NAME]) == 0
    assert "ICMP frag-needed" in capsys.readouterr().out
    assert cli.main(["set", target, "--rate", "fast", "--name", NAME]) == 2
    assert cli.main(["set", target, "--mtu", "20", "--name", NAME]) == 2
    assert cli.main(["set", target, "--mtu-blackhole", "--name", NAME]) == 2
    assert "needs an mtu" in capsys.readouterr().err
