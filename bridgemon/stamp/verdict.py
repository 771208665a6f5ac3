"""Judging a train: :class:`TrainResult` + :class:`StampThresholds` → :class:`StampVerdict`.

Pure functions. States are ``bridgemon.verdicts.State`` (``ready``,
``degraded``, ``not_ready``, ``unknown``), so the wiring can map them one to one; each
reason has a stable ``code`` (for metrics and alerts) and texts in English and
Vietnamese, e.g. "luồng 2 Mbit/s mất 12 % chiều lên (uplink); ngưỡng 5 %".
``notes`` are facts worth showing that do not change the state (the monitor's own pacing,
a stateless reflector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bridgemon.stamp.analysis import DirectionStats
from bridgemon.stamp.result import TrainResult
from bridgemon.stamp.train import IPV4_OVERHEAD, IPV6_OVERHEAD, StampThresholds
from bridgemon.stamp.units import format_rate
from bridgemon.verdicts import State

Severity = State | Literal["info"]  # "info": a note, never a state
_ORDER = {State.NOT_READY: 0, State.UNKNOWN: 1, State.DEGRADED: 2, "info": 3}

DIRECTION_TEXT = {
    "downlink": ("on the downlink (monitor → site)", "chiều xuống (downlink)"),
    "uplink": ("on the uplink (site → monitor)", "chiều lên (uplink)"),
}


@dataclass(frozen=True, slots=True)
class StampReason:
    code: str  # stamp_loss, stamp_rate, stamp_jitter, stamp_rtt, stamp_mos, stamp_no_answer…
    severity: Severity
    en: str
    vi: str
    direction: str | None = None  # downlink, uplink, round_trip

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "en": self.en, "vi": self.vi,
                "direction": self.direction}


@dataclass(frozen=True, slots=True)
class StampVerdict:
    state: State
    reasons: tuple[StampReason, ...]
    notes: tuple[StampReason, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reasons": [r.to_dict() for r in self.reasons],
                "notes": [n.to_dict() for n in self.notes]}


def _trim(number: float) -> str:
    return f"{number:.1f}".removesuffix(".0")


def _pct(ratio: float) -> str:
    return f"{_trim(ratio * 100)} %"


def _ms(seconds: float) -> str:
    return f"{_trim(seconds * 1000)} ms"


def _grade_high(value: float, good: float, bad: float) -> tuple[Severity, float] | None:
    if value > bad:
        return State.NOT_READY, bad
    if value > good:
        return State.DEGRADED, good
    return None


def _grade_low(value: float, good: float, bad: float) -> tuple[Severity, float] | None:
    if value < bad:
        return State.NOT_READY, bad
    if value < good:
        return State.DEGRADED, good
    return None


def judge(result: TrainResult, thresholds: StampThresholds | None = None) -> StampVerdict:
    """The verdict on one train."""
    t = thresholds or StampThresholds()
    reasons: list[StampReason] = []
    notes: list[StampReason] = []
    spec = result.spec
    target = spec.target
    rate = format_rate(spec.rate_bps)

    if result.error is not None:
        severity: Severity = (State.UNKNOWN if result.error_kind in ("budget", "timeout")
                              else State.NOT_READY)
        code = "stamp_not_run" if severity == State.UNKNOWN else "stamp_error"
        reasons.append(StampReason(
            code, severity, f"STAMP {rate} not tested: {result.error}",
            f"chưa đo được luồng STAMP {rate}: {result.error_vi or result.error}",
        ))  # fmt: skip
        return _verdict(reasons, notes)

    anomalies = result.anomalies
    figures = result.figures
    answered = result.answered
    overhead = IPV6_OVERHEAD if result.address and ":" in result.address else IPV4_OVERHEAD
    packet = spec.size + overhead
    icmp = anomalies.icmp

    if icmp.get("frag_needed") or icmp.get("local_msgsize"):
        mtu = f" of {anomalies.path_mtu} B" if anomalies.path_mtu else ""
        mtu_vi = f" {anomalies.path_mtu} B" if anomalies.path_mtu else ""
        reasons.append(StampReason(
            "stamp_mtu", State.NOT_READY,
            f"{packet}-byte packets do not fit the path MTU{mtu} (fragmentation needed)",
            f"gói {packet} B không vừa MTU đường truyền{mtu_vi} (cần phân mảnh)",
        ))  # fmt: skip
    if anomalies.foreign:
        en = (f"{anomalies.foreign} answers came from {anomalies.foreign_source} instead of "
              f"{target} and were ignored (NAT, or a reflector answering from another address)")
        vi = (f"{anomalies.foreign} phản hồi đến từ {anomalies.foreign_source} thay vì "
              f"{target} nên bị bỏ qua (NAT, hoặc reflector trả lời từ địa chỉ khác)")
        if answered == 0:
            reasons.append(StampReason("stamp_foreign", State.NOT_READY, en, vi))
        else:
            notes.append(StampReason("stamp_foreign", "info", en, vi))
    if anomalies.invalid:
        parts = [(anomalies.truncated, "truncated", "bị cụt"),
                 (anomalies.oversized, "oversized", "quá lớn"),
                 (anomalies.unmatched, "not answering any packet sent",
                  "không khớp gói nào đã gửi")]  # fmt: skip
        en = ", ".join(f"{n} {what}" for n, what, _ in parts if n)
        vi = ", ".join(f"{n} {what}" for n, _, what in parts if n)
        reason_en = f"the reflector at {target} sent invalid STAMP answers: {en}"
        reason_vi = f"reflector tại {target} trả lời gói STAMP không hợp lệ: {vi}"
        if answered == 0:
            reasons.append(StampReason("stamp_invalid", State.NOT_READY, reason_en, reason_vi))
        elif anomalies.invalid > t.invalid_ratio * max(1, result.sent):
            reasons.append(StampReason("stamp_invalid", State.DEGRADED, reason_en, reason_vi))
        else:
            notes.append(StampReason("stamp_invalid", "info", reason_en, reason_vi))
    if anomalies.flood:
        reasons.append(StampReason(
            "stamp_flood", State.DEGRADED,
            f"far more datagrams than packets sent came back from {target}: stopped listening",
            f"nhận về nhiều gói hơn hẳn số gói đã gửi từ {target}: đã ngừng nhận",
        ))  # fmt: skip

    if figures is None or answered == 0:
        if not any(r.severity == State.NOT_READY for r in reasons):
            reasons.append(_no_answer(result, target))
        return _verdict(reasons, notes)

    # ---- loss, per direction where the reflector tells it, else over the round trip
    directions = (("downlink", figures.downlink), ("uplink", figures.uplink))
    worst_direction: Severity | None = None
    for name, stats in directions:
        if stats.loss_ratio is None:
            continue
        grade = _grade_high(stats.loss_ratio, t.loss_good, t.loss_bad)
        if grade is not None:
            reasons.append(_loss_reason(rate, stats.loss_ratio, grade, name))
            if worst_direction is None or _ORDER[grade[0]] < _ORDER[worst_direction]:
                worst_direction = grade[0]
    rt = figures.round_trip
    grade = _grade_high(rt.loss_ratio, t.loss_good, t.loss_bad)
    if grade is not None and (worst_direction is None
                              or _ORDER[grade[0]] < _ORDER[worst_direction]):
        reasons.append(_loss_reason(rate, rt.loss_ratio, grade, "round_trip"))
    if figures.mode == "stateless":
        notes.append(StampReason(
            "stamp_stateless", "info",
            "stateless reflector: loss is known over the round trip only",
            "reflector không lưu trạng thái: chỉ đo được mất gói khứ hồi",
        ))  # fmt: skip
    elif figures.mode == "inconsistent":
        notes.append(StampReason(
            "stamp_inconsistent", "info",
            "the reflector's sequence numbers are not kept per session: loss per direction "
            "unknown",
            "reflector không đánh số thứ tự riêng cho từng phiên: không tách được mất gói "
            "theo chiều",
        ))  # fmt: skip
    if (figures.mode == "stateful" and figures.unattributed
            and figures.unattributed > t.loss_good * rt.sent):
        notes.append(StampReason(
            "stamp_unattributed", "info",
            f"{figures.unattributed} packets at the start or end of the train got no answer "
            "(direction unknown): the path may have failed during the test",
            f"{figures.unattributed} gói ở đầu hoặc cuối luồng không có phản hồi (không rõ "
            "chiều): đường truyền có thể đã gián đoạn trong lúc đo",
        ))  # fmt: skip

    # ---- rate carried, jitter: per direction (both need timestamps only)
    for name, stats in directions:
        reasons.extend(_direction_reasons(name, stats, rate, t))

    if rt.rtt is not None:
        grade = _grade_high(rt.rtt.p95, t.rtt_good, t.rtt_bad)
        if grade is not None:
            reasons.append(StampReason(
                "stamp_rtt", grade[0],
                f"round-trip delay p95 {_ms(rt.rtt.p95)}; limit {_ms(grade[1])}",
                f"trễ khứ hồi p95 {_ms(rt.rtt.p95)}; ngưỡng {_ms(grade[1])}",
                "round_trip",
            ))  # fmt: skip
    grade = _grade_low(figures.mos, t.mos_good, t.mos_bad)
    if grade is not None:
        reasons.append(StampReason(
            "stamp_mos", grade[0],
            f"video quality score (MOS, ITU-T G.1070) {figures.mos:.1f}; limit {grade[1]:g}",
            f"điểm chất lượng video (MOS, ITU-T G.1070) {figures.mos:.1f}; ngưỡng {grade[1]:g}",
        ))  # fmt: skip
    if result.pacing is not None and result.pacing.error_p99 > t.pacing_p99:
        notes.append(StampReason(
            "stamp_pacing", "info",
            f"the monitor could not keep the train's pace (send-time error p99 "
            f"{_ms(result.pacing.error_p99)}): figures are less reliable",
            f"máy giám sát không giữ được nhịp gửi (sai lệch thời điểm gửi p99 "
            f"{_ms(result.pacing.error_p99)}): số liệu kém tin cậy",
        ))  # fmt: skip
    return _verdict(reasons, notes)


def _loss_reason(
    rate: str, ratio: float, grade: tuple[Severity, float], direction: str
) -> StampReason:
    if direction == "round_trip":
        where_en = "over the round trip (the reflector does not tell which direction)"
        where_vi = "khứ hồi (reflector không cho biết chiều nào)"
    else:
        where_en, where_vi = DIRECTION_TEXT[direction]
    return StampReason(
        "stamp_loss", grade[0],
        f"{rate} stream lost {_pct(ratio)} {where_en}; limit {_pct(grade[1])}",
        f"luồng {rate} mất {_pct(ratio)} {where_vi}; ngưỡng {_pct(grade[1])}",
        direction,
    )  # fmt: skip


def _direction_reasons(
    name: str, stats: DirectionStats, rate: str, t: StampThresholds
) -> list[StampReason]:
    where_en, where_vi = DIRECTION_TEXT[name]
    out: list[StampReason] = []
    # Against what entered the direction, not the nominal rate: a monitor that fell
    # behind its schedule, or a downlink that thinned the answers, is not this line's fault.
    offered = stats.offered_bps
    if stats.carried_bps is not None and offered:
        grade = _grade_low(stats.carried_bps / offered, t.carried_good, t.carried_bad)
        if grade is not None:
            carried = format_rate(stats.carried_bps)
            out.append(StampReason(
                "stamp_rate", grade[0],
                f"only {carried} of the {rate} stream got through {where_en}",
                f"chỉ {carried} trong luồng {rate} đi qua được {where_vi}",
                name,
            ))  # fmt: skip
    if stats.jitter is not None:
        grade = _grade_high(stats.jitter, t.jitter_good, t.jitter_bad)
        if grade is not None:
            out.append(StampReason(
                "stamp_jitter", grade[0],
                f"jitter {_ms(stats.jitter)} {where_en}; limit {_ms(grade[1])}",
                f"độ trễ biến thiên (jitter) {_ms(stats.jitter)} {where_vi}; "
                f"ngưỡng {_ms(grade[1])}",
                name,
            ))  # fmt: skip
    return out


def _no_answer(result: TrainResult, target: str) -> StampReason:
    icmp = result.anomalies.icmp
    if icmp.get("port_unreachable"):
        return StampReason(
            "stamp_no_answer", State.NOT_READY,
            f"no STAMP reflector answers at {target} (ICMP port unreachable: nothing "
            "listens on that port)",
            f"không có reflector STAMP trả lời tại {target} (ICMP port unreachable: không "
            "có dịch vụ nào nghe ở cổng này)",
        )  # fmt: skip
    for kind, en, vi in (("host_unreachable", "host unreachable", "không tới được máy"),
                         ("net_unreachable", "network unreachable", "không tới được mạng"),
                         ("prohibited", "administratively prohibited", "bị chặn bởi quản trị"),
                         ("ttl_exceeded", "TTL exceeded", "hết TTL")):  # fmt: skip
        if icmp.get(kind):
            return StampReason(
                "stamp_no_answer", State.NOT_READY,
                f"no answer from the STAMP reflector at {target} (ICMP {en})",
                f"không có phản hồi từ reflector STAMP tại {target} (ICMP: {vi})",
            )  # fmt: skip
    if result.sent == 0 and result.anomalies.send_error:
        error = result.anomalies.send_error
        return StampReason(
            "stamp_no_answer", State.NOT_READY, f"could not send to {target}: {error}",
            f"không gửi được tới {target}: {error}",
        )  # fmt: skip
    wait = result.spec.wait
    return StampReason(
        "stamp_no_answer", State.NOT_READY,
        f"no answer from the STAMP reflector at {target} within {wait:g} s of the last "
        f"packet (no reflector, or a firewall drops UDP port {result.spec.port})",
        f"không có phản hồi từ reflector STAMP tại {target} trong {wait:g} s sau gói cuối "
        f"(không có reflector, hoặc tường lửa chặn UDP cổng {result.spec.port})",
    )  # fmt: skip


def _verdict(reasons: list[StampReason], notes: list[StampReason]) -> StampVerdict:
    reasons.sort(key=lambda r: _ORDER[r.severity])
    state: State = State.READY
    if reasons:
        worst = reasons[0].severity
        state = State.DEGRADED if worst == "info" else worst
    return StampVerdict(state, tuple(reasons), tuple(notes))
