"""Interoperability of bridgemon's STAMP with independent implementations.

* Wireshark's TWAMP-Test dissector (tshark, Debian package ``tshark``) decodes the packets
  our sender writes and our reflector answers: an independent reading of the wire format.
* TWAMP-light peers as RFC 5357 Appendix I lets them behave, as twampy (Nokia's
  TWAMP-light in Python) does: a sender of 14-octet headers with padding, a reflector
  answering 38 octets (no TTL) that restarts its numbering at sequence number 0. The
  real twampy was run against both ends by hand (see the report of this change); these
  tests keep its behaviours.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bridgemon.stamp import Reflector, TrainSpec, judge, packets, run_train

HOST = "127.0.0.1"
T1 = 1_584_576_000_500_000_000  # 2020-03-19T00:00:00.5Z


def _ip_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x88, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:] + udp


async def _recv(sock: socket.socket, timeout: float) -> bytes:
    # The reflector runs in this event loop: wait for its answer without blocking it.
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)


def _pcap(path: Path, frames: list[bytes]) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # raw IPv4
        for i, frame in enumerate(frames):
            out.write(struct.pack("<IIII", 1_584_576_000, i, len(frame), len(frame)) + frame)


@pytest.mark.skipif(shutil.which("tshark") is None,
                    reason="tshark not installed (Debian package 'tshark')")
async def test_wireshark_reads_our_packets_as_twamp_test(tmp_path: Path) -> None:
    request = packets.sender_packet(5, packets.ntp_from_ns(T1), 0x9401, size=60)
    async with Reflector([(HOST, 0)]) as refl:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(request, refl.addresses[0])
            answer = await _recv(sock, 2.0)
    assert len(answer) == 60
    path = tmp_path / "stamp.pcap"
    _pcap(path, [_ip_udp("192.0.2.1", "192.0.2.2", 40000, 862, request),
                 _ip_udp("192.0.2.2", "192.0.2.1", 862, 40000, answer)])  # fmt: skip
    fields = ["seq_number", "timestamp", "error_estimate.s", "error_estimate.scale",
              "error_estimate.multiplier", "receive_timestamp", "sender_seq_number",
              "sender_timestamp", "sender_ttl"]  # fmt: skip
    argv = ["tshark", "-r", str(path), "-d", "udp.port==862,twamp.test", "-T", "fields",
            "-E", "separator=|", *(x for f in fields for x in ("-e", f"twamp.test.{f}"))]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    sent, reflected = (line.split("|") for line in result.stdout.strip().splitlines())
    assert sent[0] == "5" and sent[1] == "Mar 19, 2020 00:00:00.500000000 UTC"
    # The dissector reads every packet with the reflected layout (a sender packet's MBZ
    # then shows as zero fields): the first error estimate is the packet's own.
    assert [sent[i].split(",")[0] for i in (2, 3, 4)] == ["1", "20", "1"]  # S, scale, mult.
    assert sent[5] == "Jan  1, 1970 00:00:00.000000000 UTC"  # MBZ: zero
    parsed = packets.parse_reflected(answer)
    assert reflected[0] == "0"  # the reflector's own number, first of its session
    assert reflected[6] == "5" and reflected[7] == "Mar 19, 2020 00:00:00.500000000 UTC"
    assert reflected[8] == "64"  # the TTL our request arrived with
    t2 = time.gmtime(packets.ns_from_timestamp(parsed.receive_timestamp,
                                               parsed.error_estimate) // 10**9)
    assert reflected[5].startswith(time.strftime("%b %e, %Y %H:%M:%S", t2))


class TwampLightReflector(asyncio.DatagramProtocol):
    """Answers as twampy's reflector does: 24 octets of its own (number, T3, error
    estimate 1, MBZ, T2), the request's first 14 octets, no padding, no TTL; numbering
    restarts whenever sequence number 0 arrives."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.index: dict[Any, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.time()
        sec, frac = int(2_208_988_800 + now), int((now - int(now)) * 0xFFFFFFFF)
        seq = struct.unpack("!I", data[:4])[0]
        idx = 0 if seq == 0 else self.index.get(addr, 0)
        head = struct.pack("!L2I2H2I", idx, sec, frac, 0x001, 0, sec, frac)
        self.transport.sendto(head + data[:14], addr)
        self.index[addr] = idx + 1


async def test_our_sender_with_a_twamp_light_reflector() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(TwampLightReflector,
                                                       local_addr=(HOST, 0))  # fmt: skip
    try:
        port = transport.get_extra_info("sockname")[1]
        result = await run_train(TrainSpec(HOST, port, duration=0.5, wait=0.3))
    finally:
        transport.close()
    fig = result.figures
    assert fig is not None and fig.round_trip.lost == 0 and result.answered == result.sent
    assert fig.answer_size_min == fig.answer_size_max == 38 and fig.ttl_min is None
    assert fig.mode == "unknown"  # its numbering restarts at 0: it looks stateless
    assert judge(result).state == "ready"


async def test_a_twamp_light_sender_with_our_reflector() -> None:
    async with Reflector([(HOST, 0)]) as refl:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for seq in range(3):
                # RFC 5357 §4.1.2: sequence number, timestamp, error estimate, padding.
                header = struct.pack("!L2IH", seq, 3_793_564_800, 0, 0x3FFF)
                sock.sendto(header + bytes(30), refl.addresses[0])  # 44 octets
                answer = await _recv(sock, 2.0)
                assert len(answer) == 44
                rseq, sseq = struct.unpack_from("!I", answer)[0], struct.unpack_from(
                    "!I", answer, 24)[0]
                assert (rseq, sseq) == (seq, seq) and answer[28:36] == header[4:12]
            sock.sendto(struct.pack("!L2IH", 9, 0, 0, 0x3FFF), refl.addresses[0])  # 14 octets
            with pytest.raises(TimeoutError):
                await _recv(sock, 0.2)  # answering would send 41 octets for 14: refused
        assert refl.stats()["dropped_truncated"] == 1
