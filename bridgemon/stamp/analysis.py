"""From what a train sent and got back to path figures. Pure: no I/O, no clock.

Directions are named from the site's side, as its technicians say them:

* **downlink** (chiều xuống): monitor → site, STAMP's forward direction (sender → reflector);
* **uplink** (chiều lên): site → monitor, the backward direction (reflector → sender).

Timestamps: T1 our send, T2 the reflector's receive, T3 its send, T4 our receive (kernel
time of arrival). Differences of two timestamps of the same clock only are used, so the
figures need no clock synchronisation between monitor and site:

* round-trip delay = (T4 − T1) − (T3 − T2), the reflector's own residence time removed
  (T4 − T1 when the reflector's timestamps are not plausible);
* interarrival jitter per direction, RFC 3550 §6.4.1: D(i, j) = (Rj − Ri) − (Sj − Si),
  J += (|D| − J) / 16, in order of arrival — downlink with S = T1, R = T2 in the
  reflector's arrival order; uplink with S = T3, R = T4 in ours; round trip on the RTT;
* reordering per direction (RFC 4737's "reordered": arriving after a later-sent packet):
  downlink in T2 order by our transmission number, uplink in T4 order by T3;
* duplicates: downlink when the reflector answered one packet twice (two different
  answers), uplink when one answer arrived twice (identical answers);
* the rate carried in a direction: packets delivered × their size on the wire over the
  span of their arrival times at that end (T2 downlink, T4 uplink).

Loss per direction needs a **stateful** reflector (RFC 8762 §4.3): its own sequence
number counts the packets it received in the session, so between two answers, sender
numbers advancing more than the reflector's mean downlink loss, and reflector numbers
missing among the answers mean uplink loss. A stateless reflector copies our number:
only the round-trip loss is known. To tell the two apart even on a clean downlink, the
sender sends its first packet twice (a duplicate, as networks make): a stateful
reflector counts both, so its numbers run one ahead of ours; a stateless one does not.
Packets before the first and after the last answered one are lost in a direction that
cannot be known ("unattributed"), e.g. when a path fails during the train.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from bridgemon.probes.result import percentile
from bridgemon.stamp.video_mos import video_mos

Mode = Literal["stateful", "stateless", "unknown", "inconsistent"]

_NS = 1e-9


@dataclass(slots=True)
class Observations:
    """What one train sent and the valid answers it got, column by column.

    Transmission ``k`` is the k-th packet sent (the duplicate of packet 0 included):
    ``tx_seq[k]`` its sequence number, ``tx_t1[k]`` its T1 in Unix ns. Answers are in
    order of arrival; ``k[i]`` is the transmission answer ``i`` answers (matched on the
    sender's number and exact timestamp), ``length[i]`` its UDP payload size, ``ttl[i]``
    the TTL the reflector saw (−1 when it did not say).
    """

    tx_seq: array[int] = field(default_factory=lambda: array("L"))
    tx_t1: array[int] = field(default_factory=lambda: array("q"))
    k: array[int] = field(default_factory=lambda: array("l"))
    rseq: array[int] = field(default_factory=lambda: array("L"))
    t2: array[int] = field(default_factory=lambda: array("q"))
    t3: array[int] = field(default_factory=lambda: array("q"))
    t4: array[int] = field(default_factory=lambda: array("q"))
    length: array[int] = field(default_factory=lambda: array("l"))
    ttl: array[int] = field(default_factory=lambda: array("h"))

    def add_answer(
        self, k: int, rseq: int, t2: int, t3: int, t4: int, length: int, ttl: int | None
    ) -> None:
        self.k.append(k)
        self.rseq.append(rseq)
        self.t2.append(t2)
        self.t3.append(t3)
        self.t4.append(t4)
        self.length.append(length)
        self.ttl.append(-1 if ttl is None else ttl)

    @property
    def answers(self) -> int:
        return len(self.k)

    @property
    def transmissions(self) -> int:
        return len(self.tx_t1)

    @property
    def sequences(self) -> int:
        """How many distinct sequence numbers were sent (the train's packets)."""
        return max(self.tx_seq) + 1 if self.tx_seq else 0


@dataclass(frozen=True, slots=True)
class RttSummary:
    """Round-trip delays in seconds."""

    min: float
    avg: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> RttSummary | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(ordered[0], math.fsum(ordered) / len(ordered), percentile(ordered, 0.95),
                   ordered[-1])

    def to_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name) * 1000, 3) for name in ("min", "avg", "p95", "max")}


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """One direction. Loss figures are None when the reflector cannot tell them."""

    expected: int | None
    lost: int | None
    loss_ratio: float | None
    jitter: float | None  # seconds
    reordered: int
    duplicates: int
    carried_bps: float | None
    mos: float | None
    # What entered this direction: our sends (downlink), the reflector's (uplink).
    offered_bps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "lost": self.lost,
            "loss_ratio": None if self.loss_ratio is None else round(self.loss_ratio, 6),
            "jitter_ms": None if self.jitter is None else round(self.jitter * 1000, 3),
            "reordered": self.reordered,
            "duplicates": self.duplicates,
            "carried_bps": None if self.carried_bps is None else round(self.carried_bps),
            "offered_bps": None if self.offered_bps is None else round(self.offered_bps),
            "mos": None if self.mos is None else round(self.mos, 2),
        }


@dataclass(frozen=True, slots=True)
class RoundTripStats:
    sent: int  # the train's packets (distinct sequence numbers)
    received: int  # of those, answered
    lost: int
    loss_ratio: float
    rtt: RttSummary | None
    jitter: float | None
    reordered: int
    duplicates: int
    mos: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "loss_ratio": round(self.loss_ratio, 6),
            "rtt_ms": None if self.rtt is None else self.rtt.to_dict(),
            "jitter_ms": None if self.jitter is None else round(self.jitter * 1000, 3),
            "reordered": self.reordered,
            "duplicates": self.duplicates,
            "mos": round(self.mos, 2),
        }


@dataclass(frozen=True, slots=True)
class PathFigures:
    mode: Mode
    round_trip: RoundTripStats
    downlink: DirectionStats
    uplink: DirectionStats
    unattributed: int  # lost, direction unknown (before the first / after the last answer)
    ttl_min: int | None
    ttl_max: int | None
    answer_size_min: int | None
    answer_size_max: int | None

    @property
    def mos(self) -> float:
        """The worse direction's score where directions are known, else the round trip's."""
        scores = [d.mos for d in (self.downlink, self.uplink) if d.mos is not None]
        return min(scores) if scores else self.round_trip.mos

    def to_dict(self) -> dict[str, Any]:
        return {
            "reflector_mode": self.mode,
            "round_trip": self.round_trip.to_dict(),
            "downlink": self.downlink.to_dict(),
            "uplink": self.uplink.to_dict(),
            "unattributed_lost": self.unattributed,
            "reflector_ttl": None if self.ttl_min is None else [self.ttl_min, self.ttl_max],
            "answer_size": (None if self.answer_size_min is None
                            else [self.answer_size_min, self.answer_size_max]),
            "mos": round(self.mos, 2),
        }


def rfc3550_jitter(transit_diffs: list[float]) -> float | None:
    """The RFC 3550 estimator fed with successive |D| values; None without any."""
    if not transit_diffs:
        return None
    jitter = 0.0
    for d in transit_diffs:
        jitter += (abs(d) - jitter) / 16.0
    return jitter


def _carried(count: int, span_ns: int, wire_bits: float) -> float | None:
    # n arrivals delimit n − 1 intervals: the rate of the packets after the first.
    if count < 2 or span_ns <= 0:
        return None
    return (count - 1) * wire_bits / (span_ns * _NS)


def analyse(
    obs: Observations,
    *,
    rate_bps: float,
    wire_size: int,
    overhead: int,
    mode: Literal["auto", "stateful", "stateless"] = "auto",
) -> PathFigures:
    """Figures of one train. ``wire_size``: octets per sent packet on the wire;
    ``overhead``: IP + UDP header octets, added to the answers' UDP sizes."""
    n_tx = obs.transmissions
    n_seq = obs.sequences
    tx_seq, tx_t1 = obs.tx_seq, obs.tx_t1
    ks, rseqs, t2s, t3s, t4s = obs.k, obs.rseq, obs.t2, obs.t3, obs.t4

    # First answer of each transmission; further ones are duplicates of one direction.
    first: dict[int, int] = {}
    seen: set[tuple[int, int, int]] = set()
    down_dups = up_dups = 0
    for i in range(obs.answers):
        key = (ks[i], rseqs[i], t2s[i])
        if ks[i] not in first:
            first[ks[i]] = i
        elif key in seen:
            up_dups += 1  # the very same answer twice: duplicated on its way back
        else:
            down_dups += 1  # the reflector answered our packet twice: it got it twice
        seen.add(key)
    order = sorted(first.values())  # first answers, in order of arrival

    # ---- round trip
    answered_seqs = {tx_seq[ks[i]] for i in order}
    received = len(answered_seqs)
    rtts: list[float] = []
    for i in order:
        total = t4s[i] - tx_t1[ks[i]]
        residence = t3s[i] - t2s[i]
        rtts.append((total - residence if 0 <= residence <= total else total) * _NS)
    rt_jitter = rfc3550_jitter([b - a for a, b in pairwise(rtts)])
    rt_reordered = _reordered([ks[i] for i in order])
    rt_loss = (n_seq - received) / n_seq if n_seq else 1.0
    round_trip = RoundTripStats(
        sent=n_seq, received=received, lost=n_seq - received, loss_ratio=rt_loss,
        rtt=RttSummary.of(rtts), jitter=rt_jitter, reordered=rt_reordered,
        duplicates=down_dups + up_dups, mos=video_mos(rate_bps, rt_loss),
    )  # fmt: skip

    # ---- which kind of reflector
    differs = any(rseqs[i] != tx_seq[ks[i]] for i in order)
    resolved: Mode
    if mode == "stateless":
        resolved = "stateless"
    elif mode == "stateful" or differs:
        resolved = "stateful"
    else:
        resolved = "unknown"

    # ---- downlink (monitor → site): reflector arrival order
    by_t2 = sorted(order, key=lambda i: (t2s[i], rseqs[i]))
    # A reflector that leaves its timestamps constant (zero) tells nothing of jitter.
    down_timed = len({t2s[i] for i in order}) > 1
    up_timed = len({t3s[i] for i in order}) > 1
    down_jitter = None if not down_timed else rfc3550_jitter([
        (t2s[j] - t2s[i] - (tx_t1[ks[j]] - tx_t1[ks[i]])) * _NS
        for i, j in pairwise(by_t2)
    ])  # fmt: skip
    down_reordered = _reordered([ks[i] for i in by_t2])
    # ---- uplink (site → monitor): our arrival order
    up_jitter = None if not up_timed else rfc3550_jitter([
        (t4s[j] - t4s[i] - (t3s[j] - t3s[i])) * _NS for i, j in pairwise(order)
    ])  # fmt: skip
    up_reordered = _reordered([(t3s[i], rseqs[i]) for i in order])
    answer_sizes = [obs.length[i] for i in order]
    answer_wire_bits = (
        8.0 * (math.fsum(answer_sizes) / len(answer_sizes) + overhead) if answer_sizes else 0.0
    )

    unattributed = n_tx - len(first)
    down_counted: int | None = None
    down_expected: int | None = None
    down_lost: int | None = None
    up_expected: int | None = None
    up_lost: int | None = None
    up_delivered = len(order)
    if resolved == "stateful" and order:
        k_lo = min(ks[i] for i in order)
        k_hi = max(ks[i] for i in order)
        r_lo = min(rseqs)
        r_hi = max(rseqs)
        expected = k_hi - k_lo + 1
        # A reflector that restarts its count at sequence number 0 (twampy does) gives
        # both copies of packet 0 the same number: it did not count the second.
        if 0 in first and 1 in first and rseqs[first[0]] == rseqs[first[1]] and k_lo == 0:
            expected -= 1
        counted = (r_hi - r_lo + 1) - down_dups
        distinct_r = len({rseqs[i] for i in range(obs.answers)})
        lost_down = expected - counted
        lost_up = (r_hi - r_lo + 1) - distinct_r
        if lost_down < 0 or lost_up < 0 or r_hi - r_lo + 1 > 2 * n_tx + 16:
            resolved = "inconsistent"  # numbers not kept per session: directions unknown
        else:
            down_expected, down_lost, down_counted = expected, lost_down, counted
            up_expected, up_lost, up_delivered = r_hi - r_lo + 1, lost_up, distinct_r
            unattributed = n_tx - expected

    # The duplicate of packet 0 is no part of the stream whose rate is measured.
    twin_sent = n_tx > 1 and tx_seq[1] == 0
    twin = int(twin_sent and 1 in first)
    down_loss = down_lost / down_expected if down_lost is not None and down_expected else None
    up_loss = up_lost / up_expected if up_lost is not None and up_expected else None
    t2_sorted = [t2s[i] for i in by_t2]
    down_carried = _carried(
        (down_counted if down_counted is not None else len(order)) - twin,
        t2_sorted[-1] - t2_sorted[0] if t2_sorted else 0, 8.0 * wire_size,
    )  # fmt: skip
    t4_of = [t4s[i] for i in order]
    up_carried = _carried(
        up_delivered - twin, max(t4_of) - min(t4_of) if t4_of else 0, answer_wire_bits
    )
    # What each direction was offered, by the clock of the end that sent it: a downlink
    # bottleneck also thins the uplink, which is then no fault of the uplink's.
    sends = [t for k, t in enumerate(tx_t1) if not (twin_sent and k == 1)]
    down_offered = _carried(len(sends), max(sends) - min(sends) if sends else 0, 8.0 * wire_size)
    t3_of = [t3s[i] for i in order]
    up_offered = _carried(
        (up_expected if up_expected is not None else len(order)) - twin,
        max(t3_of) - min(t3_of) if up_timed and t3_of else 0, answer_wire_bits,
    )  # fmt: skip
    downlink = DirectionStats(
        expected=down_expected, lost=down_lost, loss_ratio=down_loss, jitter=down_jitter,
        reordered=down_reordered, duplicates=down_dups, carried_bps=down_carried,
        mos=None if down_loss is None else video_mos(rate_bps, down_loss),
        offered_bps=down_offered,
    )  # fmt: skip
    uplink = DirectionStats(
        expected=up_expected, lost=up_lost, loss_ratio=up_loss, jitter=up_jitter,
        reordered=up_reordered, duplicates=up_dups, carried_bps=up_carried,
        mos=None if up_loss is None else video_mos(rate_bps, up_loss),
        offered_bps=up_offered,
    )  # fmt: skip
    ttls = [obs.ttl[i] for i in order if obs.ttl[i] >= 0]
    return PathFigures(
        mode=resolved, round_trip=round_trip, downlink=downlink, uplink=uplink,
        unattributed=max(0, unattributed),
        ttl_min=min(ttls) if ttls else None, ttl_max=max(ttls) if ttls else None,
        answer_size_min=min(answer_sizes) if answer_sizes else None,
        answer_size_max=max(answer_sizes) if answer_sizes else None,
    )  # fmt: skip


def _reordered(values: list[Any]) -> int:
    """How many arrive after a later-sent one (RFC 4737 §3.3's reordered packets)."""
    count = 0
    highest: Any = None
    for value in values:
        if highest is not None and value < highest:
            count += 1
        else:
            highest = value
    return count
