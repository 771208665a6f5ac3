"""Packet trains (bridgemon.stamp.sender) against real reflectors on loopback: ours, and
misbehaving ones (garbage, truncated, oversized, answering from another address,
flooding, silent, absent), plus the bandwidth budget of a test run.

Every train here is short (a few hundred packets) and goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bridgemon.stamp import packets
from bridgemon.stamp.budget import BandwidthBudget, BudgetError
from bridgemon.stamp.reflector import Reflector
from bridgemon.stamp.result import TrainResult
from bridgemon.stamp.sender import run_train
from bridgemon.stamp.train import TrainSpec
from bridgemon.stamp.verdict import judge
from tests.conftest import free_port

HOST = "127.0.0.1"


def spec(port: int, **kw: object) -> TrainSpec:
    values: dict[str, object] = {"rate_bps": 2e6, "size": 1200, "duration": 0.5, "wait": 0.3}
    values.update(kw)
    return TrainSpec(HOST, port, **values)  # type: ignore[arg-type]


@pytest.fixture
async def reflector() -> AsyncIterator[Reflector]:
    async with Reflector([(HOST, 0)]) as refl:
        yield refl


async def test_clean_train_to_our_reflector(reflector: Reflector) -> None:
    port = reflector.addresses[0][1]
    result = await run_train(spec(port, duration=1.0))
    assert result.error is None and result.planned == result.sent == 204
    fig = result.figures
    assert fig is not None and fig.mode == "stateful"
    assert fig.round_trip.lost == 0 and fig.downlink.lost == 0 and fig.uplink.lost == 0
    assert fig.round_trip.rtt is not None and fig.round_trip.rtt.max < 0.05
    assert fig.downlink.carried_bps == pytest.approx(2e6, rel=0.05)
    assert result.pacing is not None
    assert result.pacing.sent_bps == pytest.approx(2e6, rel=0.02)
    assert result.pacing.error_p99 < 0.005  # < 1 ms on an idle core; this box is shared
    assert fig.ttl_min == 64 and fig.answer_size_min == fig.answer_size_max == 1200
    assert judge(result).state == "ready"
    stats = reflector.stats()
    assert stats["reflected"] == 205  # the train and the duplicate of its first packet
    # It ends once all is answered, not after the whole wait.
    assert result.elapsed < 1.0 + 0.3
    assert set(result.to_dict()) >= {"round_trip", "downlink", "uplink", "pacing", "mos"}


async def test_stateless_reflector_is_recognised() -> None:
    async with Reflector([(HOST, 0)], stateful=False) as refl:
        result = await run_train(spec(refl.addresses[0][1]))
    assert result.figures is not None and result.figures.mode == "unknown"
    assert result.figures.downlink.loss_ratio is None
    assert result.figures.downlink.jitter is not None  # one-way jitter needs no state


# ---------------------------------------------------------------------------- bad reflectors


class Misbehaving(asyncio.DatagramProtocol):
    """Answers each request as ``answer(request)`` says (None: silence)."""

    def __init__(self, answer: Callable[[bytes], list[bytes]],
                 via: socket.socket | None = None) -> None:
        self.answer = answer
        self.via = via  # another socket to answer from (another address)
        self.transport: Any = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        for out in self.answer(data):
            if self.via is not None:
                self.via.sendto(out, addr)
            else:
                self.transport.sendto(out, addr)


def valid(data: bytes) -> bytes:
    now = packets.ntp_from_ns(time.time_ns())
    return packets.reflect(data, seq=0, receive_timestamp=now, timestamp=now,
                           error_estimate=1, ttl=64)  # fmt: skip


async def with_bad_reflector(
    answer: Callable[[bytes], list[bytes]], via: socket.socket | None = None, **kw: object
) -> tuple[TrainResult, Misbehaving]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Misbehaving(answer, via), local_addr=(HOST, 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        started = time.monotonic()
        result = await run_train(spec(port, **kw))
        # Bounded: never longer than the train, its wait and a little slack.
        assert time.monotonic() - started < 0.5 + 0.3 + 1.0
        return result, proto
    finally:
        transport.close()


async def test_garbage_answers() -> None:
    result, _ = await with_bad_reflector(lambda d: [os.urandom(len(d))])
    assert result.anomalies.unmatched == result.sent + 1 and result.answered == 0
    verdict = judge(result)
    assert verdict.state == "not_ready" and verdict.reasons[0].code == "stamp_invalid"
    assert "not answering any packet sent" in verdict.reasons[0].en
    assert "không khớp gói nào đã gửi" in verdict.reasons[0].vi


async def test_mangled_sender_timestamps_are_not_trusted() -> None:
    def mangle(data: bytes) -> list[bytes]:
        answer = bytearray(valid(data))
        answer[28:36] = bytes(8)  # the sender's timestamp zeroed
        return [bytes(answer)]

    result, _ = await with_bad_reflector(mangle)
    assert result.answered == 0 and result.anomalies.unmatched > 0


async def test_truncated_answers() -> None:
    result, _ = await with_bad_reflector(lambda d: [valid(d)[:30]])
    assert result.anomalies.truncated == result.sent + 1
    assert "truncated" in judge(result).reasons[0].en


async def test_oversized_answers() -> None:
    result, _ = await with_bad_reflector(lambda d: [valid(d) + bytes(500)])
    assert result.anomalies.oversized == result.sent + 1 and result.answered == 0
    assert "oversized" in judge(result).reasons[0].en


async def test_some_bad_answers_among_good_ones_degrade() -> None:
    count = 0

    def sometimes(data: bytes) -> list[bytes]:
        nonlocal count
        count += 1
        return [valid(data)[:20]] if count % 10 == 0 else [valid(data)]

    result, _ = await with_bad_reflector(sometimes)
    assert result.anomalies.truncated >= 9 and result.answered > 80
    verdict = judge(result)
    invalid = [r for r in verdict.reasons if r.code == "stamp_invalid"]
    assert invalid and invalid[0].severity == "degraded"


async def test_answers_from_another_address_are_reported() -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    try:
        result, _ = await with_bad_reflector(lambda d: [valid(d)], via=other)
        where = f"127.0.0.2:{other.getsockname()[1]}"
    finally:
        other.close()
    assert result.answered == 0 and result.anomalies.foreign == result.sent + 1
    assert result.anomalies.foreign_source == where
    verdict = judge(result)
    assert verdict.reasons[0].code == "stamp_foreign" and where in verdict.reasons[0].en


async def test_a_flooding_reflector_is_cut_off() -> None:
    result, _ = await with_bad_reflector(lambda d: [valid(d)] * 20, duration=0.1)
    assert result.anomalies.flood
    # Read at most the flood limit (4 per packet + 256), not the 20 per packet sent.
    figures = result.figures
    assert figures is not None
    read = (figures.round_trip.received + figures.round_trip.duplicates
            + result.anomalies.invalid)  # fmt: skip
    assert read <= 4 * (result.planned + 1) + 256
    assert any(r.code == "stamp_flood" for r in judge(result).reasons)


async def test_silent_reflector() -> None:
    result, proto = await with_bad_reflector(lambda d: [])
    assert proto.requests == result.sent + 1 and result.answered == 0
    reason = judge(result).reasons[0]
    assert reason.code == "stamp_no_answer" and "firewall drops UDP port" in reason.en
    assert result.elapsed == pytest.approx(0.5 + 0.3, abs=0.2)  # the wait, then it stops


async def test_nothing_listening_is_port_unreachable() -> None:
    result = await run_train(spec(free_port(), duration=0.1))
    assert result.anomalies.icmp.get("port_unreachable", 0) > 0
    reason = judge(result).reasons[0]
    assert "ICMP port unreachable" in reason.en and "không có dịch vụ nào nghe" in reason.vi


async def test_unresolvable_host_is_an_error_result() -> None:
    result = await run_train(TrainSpec("no-such-site.invalid", duration=0.1))
    assert result.error_kind == "resolve" and result.sent == 0
    assert judge(result).state == "not_ready"


# ---------------------------------------------------------------------------- budget


async def test_a_train_larger_than_the_budget_never_starts(reflector: Reflector) -> None:
    budget = BandwidthBudget(1e6)
    result = await run_train(spec(reflector.addresses[0][1]), budget=budget)
    assert result.error_kind == "budget" and result.sent == 0
    assert "exceeds the test run's whole bandwidth budget of 1 Mbit/s" in (result.error or "")
    verdict = judge(result)
    assert verdict.state == "unknown" and "băng thông" in verdict.reasons[0].vi
    assert reflector.stats()["received"] == 0  # not a single packet went out
    with pytest.raises(BudgetError):
        budget.check(2e6)


async def test_concurrent_trains_share_the_budget(reflector: Reflector) -> None:
    budget = BandwidthBudget(2e6)
    port = reflector.addresses[0][1]
    started = time.monotonic()
    results = await asyncio.gather(*(
        run_train(spec(port, rate_bps=1e6, duration=0.3), budget=budget) for _ in range(4)
    ))  # fmt: skip
    assert all(r.error is None and r.answered == r.sent for r in results)
    assert budget.peak_bps == 2e6 and budget.peak_trains == 2 and budget.in_use_bps == 0
    # Two at a time: two rounds of about 0.3 s each (a train ends with its last
    # answer, one interval short of its duration), not one.
    assert time.monotonic() - started >= 0.55


async def test_waiting_for_the_budget_is_bounded(reflector: Reflector) -> None:
    budget = BandwidthBudget(2e6)
    port = reflector.addresses[0][1]
    first = asyncio.create_task(run_train(spec(port, duration=0.5), budget=budget))
    await asyncio.sleep(0.05)
    second = await run_train(spec(port, duration=0.1), budget=budget, budget_wait=0.1)
    assert second.error_kind == "budget" and "no room" in (second.error or "")
    assert (await first).error is None
    assert budget.running == 0 and budget.refused == 1


async def test_budget_reservation_survives_cancellation() -> None:
    budget = BandwidthBudget(1e6, max_trains=1)
    async with budget.reserve(1e6, wait=1):
        waiter = asyncio.create_task(budget.reserve(1e6, wait=5).__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.running == 0 and budget.in_use_bps == 0
    async with budget.reserve(1e6, wait=0.1):  # nothing was leaked
        assert budget.running == 1
    with pytest.raises(ValueError, match="max_trains"):
        BandwidthBudget(1e6, max_trains=0)
