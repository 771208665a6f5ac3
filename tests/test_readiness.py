"""Readiness: window of rounds + thresholds -> verdict, reasons, MOS. Pure; built by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridgemon.inventory import Inventory, Level, Site
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.readiness import (
    STALE_AFTER_INTERVALS,
    Verdict,
    judge_all,
    judge_own,
    mos,
    path_quality,
)
from bridgemon.specs import IcmpSpec, Thresholds
from bridgemon.verdicts import WORDS_VI, State

NOW = 10_000.0
LOST = None

# Thresholds that are exact in binary, for boundary tests: 1/8 s, 1/4 s, 1/32 s, 1/16 s.
DYADIC = Thresholds(
    rtt_good=0.125, rtt_bad=0.25, jitter_good=0.03125, jitter_bad=0.0625,
    loss_good=0.01, loss_bad=0.05,
)


def make_site(
    site_id: str = "20800",
    name: str = "Xã Trà Leng",
    level: str = "commune",
    parent: str | None = None,
    thresholds: Thresholds | None = None,
    interval: float = 30.0,
) -> Site:
    return Site(
        id=site_id,
        name=name,
        level=level,
        address="127.49.16.10",
        parent=parent,
        profile="default",
        contact=None,
        labels={},
        interval=interval,
        icmp=IcmpSpec(),
        thresholds=thresholds if thresholds is not None else Thresholds(),
    )


def icmp_round(
    started_at: float, rtts: tuple[float | None, ...], error: str | None = None
) -> SiteRound:
    burst = EchoBurst("127.49.16.10", rtts, error)
    result = ProbeResult(
        check="icmp", kind="icmp", target="127.49.16.10", ok=burst.received > 0,
        started_at=started_at, duration=1.8, burst=burst,
    )
    return SiteRound(started_at, (result,))


def window(*bursts: tuple[float | None, ...], last: float = NOW - 5) -> tuple[SiteRound, ...]:
    """Rounds 30 s apart, the last one started at ``last``."""
    count = len(bursts)
    return tuple(icmp_round(last - 30 * (count - 1 - i), rtts) for i, rtts in enumerate(bursts))


def steady(rtt: float, rounds: int = 5, count: int = 5) -> tuple[SiteRound, ...]:
    return window(*[(rtt,) * count for _ in range(rounds)])


def with_losses(sent: int, lost: int, rtt: float = 0.02) -> tuple[SiteRound, ...]:
    """``sent`` echoes in bursts of 5, ``lost`` of them lost (none in the last burst)."""
    assert sent % 5 == 0 and lost <= sent - 5
    echoes: list[float | None] = [LOST] * lost + [rtt] * (sent - lost)
    return window(*[tuple(echoes[i : i + 5]) for i in range(0, sent, 5)])


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


# --------------------------------------------------------------------------- ready


def test_ready() -> None:
    rounds = steady(0.02)
    verdict = judge_own(make_site(), rounds, NOW)
    assert verdict.state == State.READY
    assert verdict.reasons == ()
    assert verdict.up is True
    assert verdict.ready is True
    assert verdict.last_probe == rounds[-1].started_at
    quality = verdict.quality
    assert quality is not None
    assert (quality.sent, quality.received, quality.loss_ratio) == (25, 25, 0.0)
    assert quality.rtt is not None
    assert quality.rtt.avg == pytest.approx(0.02)
    assert quality.jitter == 0.0
    assert quality.mos == pytest.approx(mos(0.02, 0.0, 0.0))


# --------------------------------------------------------------------------- loss


def test_loss_past_bad_is_not_ready_with_texts() -> None:
    verdict = judge_own(make_site(), with_losses(sent=40, lost=3), NOW)  # 7.5 %
    assert verdict.state == State.NOT_READY
    assert verdict.ready is False
    assert verdict.up is True
    (reason,) = verdict.reasons
    assert reason.code == "loss"
    assert reason.severity == State.NOT_READY
    assert reason.en == "loss 7.5 % > 5 %"
    assert reason.vi == "mất gói 7.5 % > 5 %"
    assert str(reason) == reason.en


def test_loss_equal_to_bad_is_only_degraded() -> None:
    verdict = judge_own(make_site(), with_losses(sent=40, lost=2), NOW)  # exactly 5 %
    assert verdict.state == State.DEGRADED
    assert verdict.ready is True
    (reason,) = verdict.reasons
    assert (reason.code, reason.severity) == ("loss", State.DEGRADED)
    assert reason.en == "loss 5 % > 1 %"
    assert reason.vi == "mất gói 5 % > 1 %"


def test_loss_just_past_bad_is_not_ready() -> None:
    verdict = judge_own(make_site(), with_losses(sent=95, lost=5), NOW)  # 5.26 %
    assert verdict.state == State.NOT_READY
    assert verdict.reasons[0].en == "loss 5.3 % > 5 %"


def test_loss_equal_to_good_is_ready() -> None:
    verdict = judge_own(make_site(), with_losses(sent=100, lost=1), NOW)  # exactly 1 %
    assert verdict.state == State.READY
    assert verdict.reasons == ()


def test_loss_just_past_good_is_degraded() -> None:
    verdict = judge_own(make_site(), with_losses(sent=95, lost=1), NOW)  # 1.05 %
    assert verdict.state == State.DEGRADED
    assert verdict.reasons[0].en == "loss 1.1 % > 1 %"


def test_zero_loss_threshold() -> None:
    site = make_site(thresholds=Thresholds(loss_good=0.0))
    assert judge_own(site, with_losses(sent=100, lost=1), NOW).state == State.DEGRADED
    assert judge_own(site, with_losses(sent=100, lost=0), NOW).state == State.READY


# --------------------------------------------------------------------------- RTT


@pytest.mark.parametrize(
    ("rtt", "state"),
    [
        (0.149, State.READY),
        (0.150, State.READY),  # equal to good: within it
        (0.1501, State.DEGRADED),
        (0.300, State.DEGRADED),  # equal to bad: within it
        (0.3001, State.NOT_READY),
    ],
)
def test_rtt_around_default_thresholds(rtt: float, state: State) -> None:
    verdict = judge_own(make_site(), steady(rtt), NOW)
    assert verdict.state == state
    assert codes(verdict) == ([] if state == State.READY else ["rtt"])


def test_rtt_reason_texts() -> None:
    degraded = judge_own(make_site(), steady(0.2), NOW)
    assert [(r.en, r.vi) for r in degraded.reasons] == [
        ("RTT 200 ms > 150 ms", "độ trễ 200 ms > 150 ms")
    ]
    not_ready = judge_own(make_site(), steady(0.35), NOW)
    assert not_ready.reasons[0].severity == State.NOT_READY
    assert [(r.en, r.vi) for r in not_ready.reasons] == [
        ("RTT 350 ms > 300 ms", "độ trễ 350 ms > 300 ms")
    ]


def test_rtt_uses_the_average() -> None:
    # one spike of 500 ms among 20 ms replies: average 116 ms -> still ready on RTT
    rounds = window((0.02, 0.02, 0.02, 0.02, 0.02), (0.02, 0.02, 0.02, 0.02, 0.5))
    verdict = judge_own(make_site(thresholds=Thresholds(jitter_good=1, jitter_bad=1)), rounds, NOW)
    assert verdict.quality is not None and verdict.quality.rtt is not None
    assert verdict.quality.rtt.avg == pytest.approx(0.068)
    assert verdict.quality.rtt.max == 0.5
    assert verdict.state == State.READY


def test_custom_rtt_thresholds() -> None:
    site = make_site(thresholds=DYADIC)
    assert judge_own(site, steady(0.125), NOW).state == State.READY
    assert judge_own(site, steady(0.126), NOW).state == State.DEGRADED
    assert judge_own(site, steady(0.25), NOW).state == State.DEGRADED
    assert judge_own(site, steady(0.26), NOW).state == State.NOT_READY


# --------------------------------------------------------------------------- jitter


def alternating(low: float, high: float) -> tuple[SiteRound, ...]:
    return window(*[(low, high, low, high, low) for _ in range(3)])


@pytest.mark.parametrize(
    ("high", "state"),
    [
        (0.0625 + 0.03125, State.READY),  # jitter exactly jitter_good
        (0.0625 + 0.0390625, State.DEGRADED),
        (0.0625 + 0.0625, State.DEGRADED),  # jitter exactly jitter_bad
        (0.0625 + 0.0703125, State.NOT_READY),
    ],
)
def test_jitter_around_thresholds(high: float, state: State) -> None:
    site = make_site(thresholds=replace_rtt(DYADIC))
    verdict = judge_own(site, alternating(0.0625, high), NOW)
    assert verdict.quality is not None
    assert verdict.quality.jitter == high - 0.0625
    assert verdict.state == state
    assert codes(verdict) == ([] if state == State.READY else ["jitter"])


def replace_rtt(thresholds: Thresholds) -> Thresholds:
    """Thresholds with RTT out of the way, so only jitter can grade."""
    return Thresholds(
        rtt_good=1.0, rtt_bad=2.0, jitter_good=thresholds.jitter_good,
        jitter_bad=thresholds.jitter_bad, loss_good=thresholds.loss_good,
        loss_bad=thresholds.loss_bad,
    )


def test_jitter_reason_texts_with_default_thresholds() -> None:
    degraded = judge_own(make_site(), alternating(0.1, 0.14), NOW)
    assert [(r.code, r.severity, r.en, r.vi) for r in degraded.reasons] == [
        ("jitter", State.DEGRADED, "jitter 40 ms > 30 ms", "jitter 40 ms > 30 ms")
    ]
    not_ready = judge_own(make_site(), alternating(0.05, 0.11), NOW)
    assert [(r.code, r.severity, r.en) for r in not_ready.reasons] == [
        ("jitter", State.NOT_READY, "jitter 60 ms > 50 ms")
    ]


def test_jitter_is_mean_absolute_difference_across_lost_echoes() -> None:
    # received: 100, 200, 150 ms -> |200-100| = 100, |150-200| = 50 -> mean 75 ms
    quality = path_quality([EchoBurst("x", (0.1, LOST, 0.2, LOST, LOST, 0.15))])
    assert quality is not None
    assert quality.jitter == pytest.approx(0.075)
    assert (quality.sent, quality.received) == (6, 3)
    assert quality.loss_ratio == pytest.approx(0.5)


def test_jitter_is_not_a_standard_deviation_or_range() -> None:
    # 10, 30, 10, 30: mean |diff| = 20 ms (population stdev would be 10)
    # 10, 20, 30, 40: mean |diff| = 10 ms (stdev ~11.2, range 30)
    assert path_quality([EchoBurst("x", (0.01, 0.03, 0.01, 0.03))]).jitter == pytest.approx(0.02)
    assert path_quality([EchoBurst("x", (0.01, 0.02, 0.03, 0.04))]).jitter == pytest.approx(0.01)


def test_single_reply_has_zero_jitter_and_no_reply_has_none() -> None:
    one = path_quality([EchoBurst("x", (LOST, 0.05, LOST))])
    assert one is not None and one.jitter == 0.0
    none = path_quality([EchoBurst("x", (LOST, LOST))])
    assert none is not None
    assert none.jitter is None
    assert none.rtt is None
    assert none.loss_ratio == 1.0
    assert none.mos == 1.0
    assert path_quality([]) is None


# --------------------------------------------------------------------------- the window


def test_window_pools_jitter_pairs_and_does_not_chain_bursts() -> None:
    quality = path_quality(
        [
            EchoBurst("x", (0.10, 0.11, 0.12)),  # diffs 10, 10 ms
            EchoBurst("x", (0.30, 0.34)),  # diff 40 ms; 120 -> 300 is NOT a pair
        ]
    )
    assert quality is not None
    # pooled: (10 + 10 + 40) / 3 = 20 ms (mean of per-burst means would be 25 ms)
    assert quality.jitter == pytest.approx(0.02)


def test_window_aggregates_loss_and_rtt_over_rounds() -> None:
    rounds = window(
        (0.01, 0.02, 0.03, LOST, LOST),
        (0.04, 0.05, LOST, LOST, LOST),
        (0.06, 0.07, 0.08, 0.09, 0.10),
    )
    quality = judge_own(make_site(), rounds, NOW).quality
    assert quality is not None
    assert (quality.sent, quality.received) == (15, 10)
    assert quality.loss_ratio == pytest.approx(5 / 15)
    assert quality.rtt is not None
    assert quality.rtt.min == pytest.approx(0.01)
    assert quality.rtt.max == pytest.approx(0.10)
    assert quality.rtt.avg == pytest.approx(0.055)
    assert quality.rtt.p95 == pytest.approx(0.0955)


def test_earlier_losses_in_the_window_count_while_the_site_is_up() -> None:
    rounds = window((LOST,) * 5, (0.02,) * 5)
    verdict = judge_own(make_site(), rounds, NOW)
    assert verdict.up is True
    assert verdict.state == State.NOT_READY
    assert [(r.code, r.en) for r in verdict.reasons] == [("loss", "loss 50 % > 5 %")]


def test_a_round_without_icmp_is_judged_on_the_window() -> None:
    tcp = ProbeResult("h323", "tcp", "127.49.16.10:1720", True, NOW - 5, 0.01)
    rounds = (*steady(0.2, rounds=2), SiteRound(NOW - 5, (tcp,)))
    verdict = judge_own(make_site(), rounds, NOW)
    assert verdict.up is None
    assert verdict.state == State.DEGRADED
    assert codes(verdict) == ["rtt"]


def test_reasons_sorted_worst_first() -> None:
    # loss 5 % (degraded) and RTT 350 ms (not ready): the not-ready reason comes first
    echoes: list[float | None] = [LOST] + [0.35] * 19
    rounds = window(*[tuple(echoes[i : i + 5]) for i in range(0, 20, 5)])
    verdict = judge_own(make_site(), rounds, NOW)
    assert verdict.state == State.NOT_READY
    assert [(r.code, r.severity) for r in verdict.reasons] == [
        ("rtt", State.NOT_READY),
        ("loss", State.DEGRADED),
    ]


# --------------------------------------------------------------------------- no reply


def test_no_reply_is_not_ready() -> None:
    rounds = window((0.02,) * 5, (LOST,) * 5)
    verdict = judge_own(make_site(), rounds, NOW)
    assert verdict.state == State.NOT_READY
    assert verdict.up is False
    assert verdict.ready is False
    # no loss/RTT grading on top of "no reply"
    assert [(r.code, r.severity, r.en, r.vi) for r in verdict.reasons] == [
        ("no_reply", State.NOT_READY, "no reply to 5 echoes", "không phản hồi 5 gói ping")
    ]


def test_no_reply_carries_the_icmp_error() -> None:
    rounds = (icmp_round(NOW - 5, (LOST,) * 3, error="host unreachable"),)
    (reason,) = judge_own(make_site(), rounds, NOW).reasons
    assert reason.en == "no reply to 3 echoes (host unreachable)"
    assert reason.vi == "không phản hồi 3 gói ping (không tới được thiết bị)"  # no English


def test_nothing_sent_uses_the_probe_reason() -> None:
    result = ProbeResult(
        "icmp", "icmp", "mcu.quangnam.gov.vn", False, NOW - 5, 2.0,
        reason="cannot resolve mcu.quangnam.gov.vn",
    )
    verdict = judge_own(make_site(), (SiteRound(NOW - 5, (result,)),), NOW)
    assert verdict.state == State.NOT_READY
    assert verdict.up is False
    assert verdict.quality is None
    assert [(r.code, r.en, r.vi) for r in verdict.reasons] == [
        ("no_reply", "cannot resolve mcu.quangnam.gov.vn", "cannot resolve mcu.quangnam.gov.vn")
    ]


# --------------------------------------------------------------------------- unknown, stale


def test_unknown_when_never_probed() -> None:
    verdict = judge_own(make_site(), (), NOW)
    assert verdict.state == State.UNKNOWN
    assert verdict.up is None
    assert verdict.quality is None
    assert verdict.last_probe is None
    assert verdict.ready is False
    assert [(r.code, r.en, r.vi) for r in verdict.reasons] == [
        ("no_data", "not probed yet", "chưa được đo")
    ]


def test_stale_after_three_intervals() -> None:
    site = make_site(interval=30.0)
    assert STALE_AFTER_INTERVALS == 3
    grace = site.icmp.duration  # the last burst may still be running
    rounds = window((0.02,) * 5, last=0.0)
    fresh = judge_own(site, rounds, 3 * 30.0 + grace)
    assert fresh.state == State.READY
    stale = judge_own(site, rounds, 3 * 30.0 + grace + 0.5)
    assert stale.state == State.UNKNOWN
    assert stale.ready is False
    assert [(r.code, r.en, r.vi) for r in stale.reasons] == [
        ("stale", "no probe for 92 s", "không có kết quả đo trong 92 giây")
    ]
    assert stale.last_probe == 0.0
    assert stale.quality is not None  # the old numbers are still shown


def test_stale_scales_with_the_interval() -> None:
    rounds = window((0.02,) * 5, last=0.0)
    assert judge_own(make_site(interval=60.0), rounds, 150.0).state == State.READY
    assert judge_own(make_site(interval=30.0), rounds, 150.0).state == State.UNKNOWN


def test_stale_and_down_is_not_ready() -> None:
    rounds = window((LOST,) * 5, last=0.0)
    verdict = judge_own(make_site(), rounds, 1000.0)
    assert verdict.state == State.NOT_READY
    assert codes(verdict) == ["no_reply", "stale"]


# --------------------------------------------------------------------------- the tree


LEVELS = (
    Level("province", "Cấp tỉnh", "default", ()),
    Level("district", "Cấp huyện", "default", ("province",)),
    Level("commune", "Cấp xã", "default", ("district",)),
    Level("village", "Thôn", "default", ("commune",)),
)


def tree() -> Inventory:
    sites = [
        make_site("49", "UBND tỉnh Quảng Nam", "province"),
        make_site("516", "Huyện Nam Trà My", "district", "49"),
        make_site("20800", "Xã Trà Leng", "commune", "516"),
        make_site("20801", "Xã Trà Mai", "commune", "516"),
        make_site("20800-t1", "Thôn 1", "village", "20800"),
        make_site("507", "Thị xã Điện Bàn", "district", "49"),
        make_site("20500", "Phường Vĩnh Điện", "commune", "507"),
    ]
    return Inventory(levels=LEVELS, sites={site.id: site for site in sites})


UP = steady(0.02, rounds=2)
DOWN = window((0.02,) * 5, (LOST,) * 5)
LOSSY = window((0.02, LOST, 0.02, LOST, 0.02))  # answers, but loses 40 %


def test_commune_under_a_down_district_is_parent_down() -> None:
    windows = {"49": UP, "516": DOWN, "20800": DOWN, "20801": DOWN, "507": UP, "20500": UP}
    verdicts = judge_all(tree(), windows, NOW)
    assert verdicts["49"].state == State.READY
    assert verdicts["516"].state == State.NOT_READY  # its own parent is up: its own fault
    commune = verdicts["20800"]
    assert commune.state == State.PARENT_DOWN
    assert commune.ready is False
    assert commune.up is False
    assert [(r.code, r.severity) for r in commune.reasons] == [
        ("parent_down", State.PARENT_DOWN),
        ("no_reply", State.NOT_READY),
    ]
    assert commune.reasons[0].en == "parent Huyện Nam Trà My (516) is down"
    assert commune.reasons[0].vi == "cấp trên Huyện Nam Trà My (516) mất kết nối"
    assert verdicts["20801"].state == State.PARENT_DOWN
    assert verdicts["20500"].state == State.READY


def test_parent_down_is_recursive() -> None:
    windows = {"49": UP, "516": DOWN, "20800": DOWN, "20800-t1": DOWN}
    verdicts = judge_all(tree(), windows, NOW)
    assert verdicts["20800"].state == State.PARENT_DOWN
    village = verdicts["20800-t1"]
    assert village.state == State.PARENT_DOWN
    assert village.reasons[0].en == "parent Xã Trà Leng (20800) is down"


def test_district_under_a_down_province_is_parent_down() -> None:
    windows = {"49": DOWN, "516": DOWN, "20800": DOWN, "507": UP}
    verdicts = judge_all(tree(), windows, NOW)
    assert verdicts["49"].state == State.NOT_READY
    assert verdicts["516"].state == State.PARENT_DOWN
    assert verdicts["20800"].state == State.PARENT_DOWN
    assert verdicts["507"].state == State.READY


def test_child_that_answers_under_a_down_parent_is_judged_on_its_own() -> None:
    windows = {"49": UP, "516": DOWN, "20800": UP, "20801": LOSSY, "20800-t1": DOWN}
    verdicts = judge_all(tree(), windows, NOW)
    assert verdicts["20800"].state == State.READY
    assert verdicts["20801"].state == State.NOT_READY
    assert codes(verdicts["20801"]) == ["loss"]
    # and a failing child of that answering commune is its own fault again
    assert verdicts["20800-t1"].state == State.NOT_READY
    assert codes(verdicts["20800-t1"]) == ["no_reply"]


def test_failing_child_under_a_degraded_parent_is_not_suppressed() -> None:
    windows = {"49": UP, "516": steady(0.2, rounds=2), "20800": DOWN}
    verdicts = judge_all(tree(), windows, NOW)
    assert verdicts["516"].state == State.DEGRADED
    assert verdicts["20800"].state == State.NOT_READY


def test_unprobed_sites_in_the_tree_are_unknown() -> None:
    verdicts = judge_all(tree(), {"49": UP, "516": DOWN}, NOW)
    assert set(verdicts) == set(tree().sites)
    assert verdicts["20800"].state == State.UNKNOWN  # no data: not blamed on the parent
    assert verdicts["20500"].state == State.UNKNOWN
    assert list(verdicts) == [site.id for site, _ in tree().walk()]


# --------------------------------------------------------------------------- MOS


def expected_mos(rtt_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """The docstring's formula, spelled out independently."""
    eff = rtt_ms / 2 + 2 * jitter_ms + 10
    r = 93.2 - eff / 40 if eff < 160 else 93.2 - (eff - 120) / 10
    r = min(max(r - 2.5 * loss_pct, 0), 100)
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def test_mos_of_a_perfect_path() -> None:
    # eff = 10 ms, R = 93.2 - 0.25 = 92.95,
    # MOS = 1 + 0.035*92.95 + 7e-6*92.95*32.95*7.05 = 1 + 3.25325 + 0.15114 = 4.40439
    assert mos(0.0, 0.0, 0.0) == pytest.approx(4.40439, abs=1e-5)


def test_mos_worked_example() -> None:
    # RTT 300 ms, jitter 20 ms, loss 1 %: eff = 150 + 40 + 10 = 200 ms,
    # R = 93.2 - (200 - 120)/10 - 2.5 = 82.7,
    # MOS = 1 + 2.8945 + 7e-6*82.7*22.7*17.3 = 4.12184
    assert mos(0.3, 0.02, 0.01) == pytest.approx(4.12184, abs=1e-5)
    assert mos(0.3, 0.02, 0.01) == pytest.approx(expected_mos(300, 20, 1))


def test_mos_uses_half_the_rtt_and_twice_the_jitter() -> None:
    # eff 100 ms either way: RTT 180 ms, or RTT 0 + jitter 45 ms
    assert mos(0.18, 0.0, 0.0) == pytest.approx(mos(0.0, 0.045, 0.0))
    assert mos(0.18, 0.0, 0.0) == pytest.approx(1 + 0.035 * 90.7 + 7e-6 * 90.7 * 30.7 * 9.3)


def test_mos_is_continuous_at_the_160_ms_knee() -> None:
    below = mos(0.3 - 1e-9, 0.0, 0.0)  # eff just under 160 ms
    at = mos(0.3, 0.0, 0.0)  # eff = 160 ms
    assert below == pytest.approx(at, abs=1e-6)
    assert at == pytest.approx(expected_mos(300, 0, 0))


def test_mos_of_total_loss_is_one() -> None:
    assert mos(0.0, 0.0, 1.0) == 1.0
    assert mos(0.02, 0.005, 1.0) == 1.0


def test_mos_never_drops_below_one() -> None:
    # R between 0 and 6.5 made the raw cubic dip to ~0.99
    for loss in (0.34, 0.35, 0.36, 0.37):
        assert mos(0.0, 0.0, loss) >= 1.0


@given(
    rtt=st.floats(0, 5), jitter=st.floats(0, 1), loss=st.floats(0, 1),
    step=st.floats(1e-4, 1),
)
def test_mos_decreases_monotonically(rtt: float, jitter: float, loss: float, step: float) -> None:
    base = mos(rtt, jitter, loss)
    assert 1.0 <= base <= 4.5
    assert mos(rtt + step, jitter, loss) <= base + 1e-12
    assert mos(rtt, jitter + step / 10, loss) <= base + 1e-12
    assert mos(rtt, jitter, min(loss + step / 10, 1.0)) <= base + 1e-12


def test_mos_strictly_lower_for_worse_paths() -> None:
    assert mos(0.1, 0.0, 0.0) < mos(0.05, 0.0, 0.0)
    assert mos(0.05, 0.01, 0.0) < mos(0.05, 0.0, 0.0)
    assert mos(0.05, 0.0, 0.02) < mos(0.05, 0.0, 0.01)


def test_verdict_mos_comes_from_the_window() -> None:
    quality = judge_own(make_site(), alternating(0.1, 0.14), NOW).quality
    assert quality is not None and quality.rtt is not None and quality.jitter is not None
    assert quality.mos == pytest.approx(mos(quality.rtt.avg, quality.jitter, 0.0))
    assert math.isclose(quality.rtt.avg, (0.1 * 9 + 0.14 * 6) / 15)


# --------------------------------------------------------------------------- verdict


@pytest.mark.parametrize(
    ("state", "ready"),
    [
        (State.READY, True),
        (State.DEGRADED, True),
        (State.NOT_READY, False),
        (State.PARENT_DOWN, False),
        (State.UNKNOWN, False),
    ],
)
def test_verdict_ready(state: State, ready: bool) -> None:
    assert Verdict("x", state, (), None, None, None).ready is ready


def test_states_and_vietnamese_names() -> None:
    assert [s.value for s in State] == ["ready", "degraded", "not_ready", "parent_down", "unknown"]
    assert WORDS_VI[State.READY] == "Sẵn sàng"
    assert WORDS_VI[State.NOT_READY] == "Chưa sẵn sàng"
    assert set(WORDS_VI) == set(State)
