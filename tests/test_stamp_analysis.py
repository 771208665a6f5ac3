"""Path figures and verdicts of STAMP trains (bridgemon.stamp.analysis, verdict, video_mos).

Pure code fed with simulated trains: a path with chosen losses, duplicates and delays
per direction and a reflector of a chosen kind, so every figure has a known true value.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.stamp.analysis import Observations, analyse, rfc3550_jitter
from bridgemon.stamp.result import Anomalies, Pacing, TrainResult
from bridgemon.stamp.train import TrainSpec
from bridgemon.stamp.verdict import StampThresholds, judge
from bridgemon.stamp.video_mos import video_mos

BASE = 1_700_000_000 * 10**9
INTERVAL = 4_912_000  # 2 Mbit/s of 1200-octet packets
SPEC = TrainSpec("192.0.2.10", duration=1.0)  # 204 packets
WIRE = 1228


def simulate(
    n_seq: int = 204,
    *,
    down_lost: Iterable[int] = (),
    up_lost: Iterable[int] = (),
    down_dup: Iterable[int] = (),
    up_dup: Iterable[int] = (),
    stateful: bool = True,
    reset_on_zero: bool = False,
    counter_step: int = 1,
    down_delay: Iterable[int] | None = None,
    up_delay: int = 5_000_000,
    answer_size: int = 1200,
) -> Observations:
    """A train through a simulated path. Transmission k: k = 0 and 1 are the two copies
    of packet 0, k ≥ 2 is packet k − 1 (what the sender does)."""
    down_lost, up_lost = set(down_lost), set(up_lost)
    down_dup, up_dup = set(down_dup), set(up_dup)
    delays = list(down_delay) if down_delay is not None else None
    obs = Observations()
    answers: list[tuple[int, tuple[int, int, int, int, int]]] = []
    counter = 0
    for k in range(n_seq + 1):
        seq = 0 if k <= 1 else k - 1
        t1 = BASE + seq * INTERVAL + (1000 if k == 1 else 0)
        obs.tx_seq.append(seq)
        obs.tx_t1.append(t1)
        if k in down_lost:
            continue
        for copy in range(2 if k in down_dup else 1):
            if reset_on_zero and seq == 0:
                counter = 0
            rseq = counter if stateful else seq
            counter += counter_step
            t2 = t1 + (delays[k] if delays else 5_000_000) + copy * 1000
            t3 = t2 + 20_000
            if k in up_lost:
                continue
            t4 = t3 + up_delay
            answers.append((t4, (k, rseq, t2, t3, t4)))
            if k in up_dup:
                answers.append((t4 + 1, (k, rseq, t2, t3, t4 + 1)))
    for _, (k, rseq, t2, t3, t4) in sorted(answers):
        obs.add_answer(k, rseq, t2, t3, t4, answer_size, 61)
    return obs


def figures_of(obs: Observations, mode: str = "auto"):  # type: ignore[no-untyped-def]
    return analyse(obs, rate_bps=2e6, wire_size=WIRE, overhead=28, mode=mode)  # type: ignore[arg-type]


def result_of(obs: Observations, mode: str = "auto", **anomalies: object) -> TrainResult:
    return TrainResult(
        spec=SPEC, address="192.0.2.10", started_at=0.0, elapsed=1.0, planned=204,
        sent=obs.sequences, figures=figures_of(obs, mode),
        anomalies=Anomalies(**anomalies),  # type: ignore[arg-type]
        pacing=Pacing(0.0001, 0.0004, 0.0006, 2e6),
    )  # fmt: skip


def test_clean_path() -> None:
    fig = figures_of(simulate())
    assert fig.mode == "stateful"  # told apart by the duplicate of packet 0
    assert fig.round_trip.lost == 0 and fig.round_trip.received == 204
    assert fig.downlink.lost == 0 and fig.uplink.lost == 0 and fig.unattributed == 0
    assert fig.round_trip.rtt is not None
    assert fig.round_trip.rtt.min == pytest.approx(0.010)  # residence time removed
    assert fig.downlink.jitter == 0.0 and fig.uplink.jitter == 0.0
    assert fig.downlink.carried_bps == pytest.approx(2e6, rel=0.001)
    assert fig.uplink.carried_bps == pytest.approx(2e6, rel=0.01)
    assert fig.mos == pytest.approx(video_mos(2e6, 0.0))
    assert judge(result_of(simulate())).state == "ready"


def test_uplink_loss_is_named_in_both_languages() -> None:
    lost = range(10, 200, 8)  # 24 of 205 answers: 12 %
    result = result_of(simulate(up_lost=lost))
    fig = result.figures
    assert fig is not None and fig.mode == "stateful"
    assert fig.uplink.lost == 24 and fig.downlink.lost == 0
    assert fig.uplink.loss_ratio == pytest.approx(24 / 205)
    verdict = judge(result)
    assert verdict.state == "not_ready"
    loss = [r for r in verdict.reasons if r.code == "stamp_loss"]
    assert [r.direction for r in loss] == ["uplink"]
    assert loss[0].vi == "luồng 2 Mbit/s mất 11.7 % chiều lên (uplink); ngưỡng 5 %"
    assert loss[0].en == ("2 Mbit/s stream lost 11.7 % on the uplink (site → monitor); "
                          "limit 5 %")


def test_downlink_loss_with_a_stateful_reflector() -> None:
    fig = figures_of(simulate(down_lost=range(5, 200, 10)))  # 20 lost
    assert fig.downlink.lost == 20 and fig.uplink.lost == 0
    verdict = judge(result_of(simulate(down_lost=range(5, 200, 10))))
    assert any("chiều xuống (downlink)" in r.vi for r in verdict.reasons)
    assert not any("chiều lên" in r.vi for r in verdict.reasons if r.code == "stamp_loss")


def test_stateless_reflector_gives_round_trip_loss_only() -> None:
    obs = simulate(stateful=False, up_lost=range(10, 200, 10))
    fig = figures_of(obs)
    assert fig.mode == "unknown"  # numbers copied, duplicate of packet 0 not counted
    assert fig.downlink.loss_ratio is None and fig.uplink.loss_ratio is None
    assert fig.round_trip.lost == 19 and fig.unattributed == 19
    verdict = judge(result_of(obs))
    (loss,) = [r for r in verdict.reasons if r.code == "stamp_loss"]
    assert loss.direction == "round_trip" and "khứ hồi" in loss.vi
    stated = figures_of(obs, mode="stateless")
    assert stated.mode == "stateless"
    assert any(n.code == "stamp_stateless" for n in judge(result_of(obs, "stateless")).notes)


def test_a_reflector_restarting_its_count_at_packet_zero_shows_no_phantom_loss() -> None:
    # twampy's reflector resets its counter whenever sequence number 0 arrives.
    fig = figures_of(simulate(reset_on_zero=True, down_lost=[50]))
    assert fig.mode == "stateful" and fig.downlink.lost == 1 and fig.uplink.lost == 0


def test_a_shared_counter_is_detected_as_inconsistent() -> None:
    fig = figures_of(simulate(counter_step=3))  # another session's packets in between
    assert fig.mode == "inconsistent" and fig.downlink.loss_ratio is None
    assert fig.round_trip.lost == 0


def test_duplicates_and_reordering_per_direction() -> None:
    fig = figures_of(simulate(down_dup=[20, 30], up_dup=[40]))
    assert fig.downlink.duplicates == 2 and fig.uplink.duplicates == 1
    assert fig.downlink.lost == 0 and fig.uplink.lost == 0  # duplicates are not gains
    delays = [5_000_000] * 205
    delays[50] = 5_000_000 + 5 * INTERVAL // 2  # packet 49 overtaken by the next two
    fig = figures_of(simulate(down_delay=delays))
    # RFC 4737: the late packet is the reordered one (the two overtaking it are not).
    assert fig.downlink.reordered == 1 and fig.uplink.reordered == 0
    assert fig.round_trip.reordered == 1


def test_tail_losses_are_unattributed() -> None:
    obs = simulate(down_lost=range(150, 205))  # the path died at packet 149
    fig = figures_of(obs)
    assert fig.downlink.lost == 0 and fig.unattributed == 55
    verdict = judge(result_of(obs))
    assert any(n.code == "stamp_unattributed" for n in verdict.notes)
    (loss,) = [r for r in verdict.reasons if r.code == "stamp_loss"]
    assert loss.direction == "round_trip" and loss.severity == "not_ready"


def test_rfc3550_jitter() -> None:
    assert rfc3550_jitter([]) is None
    # Constant |D| = 16 ms: J approaches 16 ms as 1 − (15/16)^n.
    value = rfc3550_jitter([0.016] * 100)
    assert value == pytest.approx(0.016 * (1 - (15 / 16) ** 100))
    delays = [5_000_000 + (3_000_000 if k % 2 else 0) for k in range(205)]
    fig = figures_of(simulate(down_delay=delays))
    assert fig.downlink.jitter == pytest.approx(0.003, rel=0.01)
    assert fig.uplink.jitter == 0.0  # one-way: the downlink's jitter stays there


def test_rate_carried_by_a_bottleneck() -> None:
    # A 1 Mbit/s link drops every other packet of a 2 Mbit/s stream: the survivors
    # arrive twice as far apart as they were sent.
    obs = simulate(down_lost=range(3, 205, 2))
    fig = figures_of(obs)
    assert fig.downlink.carried_bps == pytest.approx(1e6, rel=0.02)
    verdict = judge(result_of(obs))
    rate = [r for r in verdict.reasons if r.code == "stamp_rate"]
    assert [r.direction for r in rate] == ["downlink"]
    assert rate[0].vi.startswith("chỉ 1 Mbit/s trong luồng 2 Mbit/s đi qua được chiều xuống")


def test_verdicts_for_no_answer_and_errors() -> None:
    empty = Observations()
    for k in range(10):
        empty.tx_seq.append(max(0, k - 1))
        empty.tx_t1.append(BASE + k)
    verdict = judge(result_of(empty, icmp={"port_unreachable": 3}))
    assert verdict.state == "not_ready"
    assert "ICMP port unreachable" in verdict.reasons[0].en
    verdict = judge(result_of(empty, foreign=10, foreign_source="192.0.2.99:862"))
    assert verdict.reasons[0].code == "stamp_foreign"
    assert "192.0.2.99:862" in verdict.reasons[0].vi
    verdict = judge(result_of(empty, truncated=4, unmatched=6))
    assert verdict.reasons[0].code == "stamp_invalid"
    assert "4 truncated, 6 not answering any packet sent" in verdict.reasons[0].en
    verdict = judge(result_of(empty))
    assert "firewall drops UDP port 862" in verdict.reasons[0].en
    failed = TrainResult(spec=SPEC, address=None, started_at=0, elapsed=0, planned=0, sent=0,
                         figures=None, anomalies=Anomalies(), pacing=None, error="no room",
                         error_vi="hết chỗ", error_kind="budget")  # fmt: skip
    verdict = judge(failed)
    assert verdict.state == "unknown" and verdict.reasons[0].vi.endswith("hết chỗ")


def test_verdict_rtt_jitter_mos_and_pacing_note() -> None:
    delays = [300_000_000 + (40_000_000 if k % 2 else 0) for k in range(205)]
    obs = simulate(down_delay=delays, down_lost=range(2, 205, 30))
    result = TrainResult(
        spec=SPEC, address="192.0.2.10", started_at=0, elapsed=1, planned=204, sent=204,
        figures=figures_of(obs), anomalies=Anomalies(), pacing=Pacing(0.001, 0.004, 0.01, 2e6),
    )  # fmt: skip
    verdict = judge(result)
    codes = {r.code for r in verdict.reasons}
    assert {"stamp_rtt", "stamp_jitter", "stamp_mos", "stamp_loss"} <= codes
    assert any(n.code == "stamp_pacing" and "p99 4 ms" in n.en for n in verdict.notes)
    loose = StampThresholds(loss_bad=0.5, loss_good=0.5, jitter_good=1, jitter_bad=1,
                            rtt_good=10, rtt_bad=10, mos_good=1, mos_bad=1, carried_good=0,
                            carried_bad=0)  # fmt: skip
    assert judge(result, loose).state == "ready", judge(result, loose)
    with pytest.raises(ValueError, match="loss_good must not exceed loss_bad"):
        StampThresholds(loss_good=0.2, loss_bad=0.1)


def test_video_mos_falls_with_loss() -> None:
    scores = [video_mos(2e6, loss) for loss in (0.0, 0.01, 0.02, 0.05)]
    assert scores == sorted(scores, reverse=True)
    assert 4.4 < scores[0] < 4.6 and 1.0 <= scores[-1] < 2.0
    assert video_mos(2e6, 1.0) == pytest.approx(1.0, abs=0.01)
    assert video_mos(512e3, 0.0) < video_mos(2e6, 0.0)  # a lower bitrate codes worse


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.integers(0, 204), max_size=60),
    st.sets(st.integers(0, 204), max_size=60),
    st.sets(st.integers(0, 204), max_size=5),
    st.sets(st.integers(0, 204), max_size=5),
)
def test_fuzz_directions_add_up(
    down: set[int], up: set[int], down_dup: set[int], up_dup: set[int]
) -> None:
    fig = figures_of(simulate(down_lost=down, up_lost=up, down_dup=down_dup, up_dup=up_dup))
    answered = {k for k in range(205) if k not in down and k not in up}
    assert fig.round_trip.lost == 204 - len({0 if k <= 1 else k - 1 for k in answered})
    if fig.mode == "stateful":
        assert fig.downlink.lost is not None and fig.uplink.lost is not None
        assert fig.downlink.lost >= 0 and fig.uplink.lost >= 0
        assert fig.downlink.lost + fig.uplink.lost + fig.unattributed >= 205 - len(answered)
        # Nothing is invented: a direction never loses more than went that way.
        answers_lost = sum(2 if k in down_dup else 1 for k in up - down)
        assert fig.downlink.lost <= len(down) and fig.uplink.lost <= answers_lost
