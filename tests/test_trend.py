"""The board dates each verdict ("since") and keeps each site's last hours (trend.py)."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

from bridgemon.board import Board
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.trend import BUCKET, POINTS, Trend
from bridgemon.verdicts import State
from tests.test_board import DOWN, NOW, UP, record, setup
from tests.test_windows import icmp_round


def test_since_is_when_the_state_changed_not_when_it_was_last_judged() -> None:
    inventory, state, board = setup()
    assert board.views["502"].since == NOW  # unknown since the start
    record(inventory, state, board, "502", UP, NOW + 30)
    assert board.views["502"].verdict.state == State.READY
    assert board.views["502"].since == NOW + 30
    record(inventory, state, board, "502", UP, NOW + 60)  # still ready: the date stays
    assert board.views["502"].since == NOW + 30
    record(inventory, state, board, "502", DOWN, NOW + 90)
    assert board.views["502"].verdict.state == State.NOT_READY
    assert board.views["502"].since == NOW + 90


def test_a_reload_board_keeps_since_and_trend_of_the_sites_that_stay() -> None:
    inventory, state, board = setup()
    record(inventory, state, board, "502", UP, NOW + 30)
    record(inventory, state, board, "516", UP, NOW + 30)
    kept_trend = board.views["502"].trend
    # The new inventory re-addresses 516: its measurements start over.
    moved = dataclasses.replace(inventory.sites["516"], address="127.49.16.99")
    new_inventory = dataclasses.replace(inventory, sites={**inventory.sites, "516": moved})
    state.sync(new_inventory, 3)
    reloaded = Board(previous=board)
    reloaded.sync(new_inventory, state.sites, NOW + 45)
    assert reloaded.views["502"].verdict.state == State.READY
    assert reloaded.views["502"].since == NOW + 30
    assert reloaded.views["502"].trend is kept_trend
    assert reloaded.views["516"].since == NOW + 45  # unknown again, since the reload
    assert reloaded.views["516"].trend is not board.views["516"].trend
    # A board without a previous one starts every date afresh.
    fresh = Board()
    fresh.sync(new_inventory, state.sites, NOW + 45)
    assert fresh.views["502"].since == NOW + 45


def test_the_trend_keeps_the_worst_round_of_each_slot_and_empties_old_slots() -> None:
    inventory, state, board = setup()
    start = (NOW // BUCKET + 1) * BUCKET
    record(inventory, state, board, "502", (0.010, 0.012, 0.014), start)
    record(inventory, state, board, "502", (0.030, None, 0.030), start + 30)
    record(inventory, state, board, "502", (0.020, 0.020, 0.020), start + BUCKET)
    points = board.views["502"].trend.points(start + BUCKET + 1)
    assert len(points) == POINTS and points[-1].at == start + BUCKET
    first, second = points[-2], points[-1]
    assert first.rtt_ms == 30.0 and first.loss_pct == 33.33 and first.jitter_ms == 2.0
    assert second.rtt_ms == 20.0 and second.loss_pct == 0.0 and second.jitter_ms == 0.0
    assert all(point.rtt_ms is None for point in points[:-2])
    # Hours later, the old slots have scrolled out of the chart instead of coming back.
    later = start + BUCKET * (POINTS + 3)
    record(inventory, state, board, "502", UP, later)
    points = board.views["502"].trend.points(later)
    assert [p.rtt_ms for p in points if p.rtt_ms is not None] == [10.0]


def test_a_round_replayed_or_out_of_order_is_not_counted_twice() -> None:
    trend = Trend()
    burst = EchoBurst("127.0.0.1", (0.05,))
    early = SiteRound(NOW, (ProbeResult("icmp", "icmp", "127.0.0.1", True, NOW, 0.1,
                                        burst=burst),))
    trend.add(icmp_round(NOW + 10, "127.0.0.1", (0.01,)))
    trend.add(early)  # older than the newest taken: a replay
    assert trend.points(NOW + 10)[-1].rtt_ms == 10.0


def test_twelve_thousand_trends_fit_in_fifteen_megabytes() -> None:
    site_round = icmp_round(NOW, "127.0.0.1", UP)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        trends = [Trend() for _ in range(12_000)]
        for trend in trends:
            trend.add(site_round)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 15_000_000, f"{used / 1e6:.1f} MB"
    print(f"12,000 trends: {used / 1e6:.1f} MB")
