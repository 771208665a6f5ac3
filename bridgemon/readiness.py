"""Judging sites: window of rounds + thresholds -> verdict, reasons, MOS. No I/O.

Shared by the daemon and by test runs, so a report and the dashboard never disagree.

Definitions (also in the README):
- loss ratio: echoes lost / echoes sent over the whole window;
- RTT min/avg/max/p95: over every reply in the window; the thresholds apply to the average;
- jitter: the mean absolute difference of consecutive RTTs within each burst (mtr's Javg),
  pooled over the window;
- MOS: the simplified E-model (ITU-T G.107 as simplified by Cole & Rosenbluth) with
  one-way latency taken as RTT/2: effective latency = RTT_avg/2 + 2·jitter + 10 ms;
  R = 93.2 − eff/40 (eff < 160 ms) or 93.2 − (eff − 120)/10; R −= 2.5 × loss %;
  MOS = 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R), R clamped to [0, 100].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridgemon.inventory import Inventory, Site
from bridgemon.probes.reasons_vi import in_vietnamese
from bridgemon.probes.result import EchoBurst, RttStats, SiteRound
from bridgemon.specs import Thresholds
from bridgemon.verdicts import CAN_JOIN, RANK, State

# How long a site may go without a probe before its verdict is no longer trusted.
STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a site is not simply ready: ``code`` is stable (metrics, alerts), texts for people."""

    code: str  # no_reply, loss, rtt, jitter, parent_down, no_data, stale, check:NAME,
    # vantage_isolated
    severity: State
    en: str
    vi: str

    def __str__(self) -> str:
        return self.en


@dataclass(frozen=True, slots=True)
class PathQuality:
    sent: int
    received: int
    loss_ratio: float
    rtt: RttStats | None
    jitter: float | None
    mos: float | None


@dataclass(frozen=True, slots=True)
class Verdict:
    site_id: str
    state: State
    reasons: tuple[Reason, ...]
    up: bool | None  # did the latest burst get any reply; None when never probed
    quality: PathQuality | None
    last_probe: float | None

    @property
    def ready(self) -> bool:
        """Can the site join a conference (ready, or degraded with a warning)."""
        return self.state in CAN_JOIN


def mos(rtt_avg: float, jitter: float, loss_ratio: float) -> float:
    """Mean opinion score (1–4.5) of a path; RTT and jitter in seconds."""
    effective_ms = rtt_avg * 1000 / 2 + 2 * jitter * 1000 + 10
    r = 93.2 - effective_ms / 40 if effective_ms < 160 else 93.2 - (effective_ms - 120) / 10
    r -= 2.5 * loss_ratio * 100
    r = min(max(r, 0.0), 100.0)
    # The cubic dips below 1 for 0 < R < 6.5; the scale's floor is 1.
    return max(1.0, 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r))


def path_quality(bursts: Sequence[EchoBurst]) -> PathQuality | None:
    if not bursts:
        return None
    # One pass, no generator per figure: judged for every site every round.
    sent = received = pairs = 0
    jitter_sums: list[float] = []
    rtts: list[float] = []
    for burst in bursts:
        sent += len(burst.rtts)
        received += burst.received
        pairs += burst.jitter_count
        jitter_sums.append(burst.jitter_sum)
        if burst.received == len(burst.rtts):
            rtts.extend(burst.rtts)  # type: ignore[arg-type]  # every echo answered
        else:
            rtts.extend(rtt for rtt in burst.rtts if rtt is not None)
    stats = RttStats.of(rtts)
    jitter = math.fsum(jitter_sums) / pairs if pairs else (0.0 if rtts else None)
    loss = (sent - received) / sent if sent else 1.0
    # A path that carried nothing scores the scale's floor rather than no score at all.
    score = mos(stats.avg, jitter or 0.0, loss) if stats is not None else 1.0
    return PathQuality(sent, received, loss, stats, jitter, score)


def _trim(number: float) -> str:
    return f"{number:.1f}".removesuffix(".0")


def _ms(seconds: float) -> str:
    return f"{_trim(seconds * 1000)} ms" if seconds < 10 else f"{seconds:.0f} s"


def _pct(ratio: float) -> str:
    return f"{_trim(ratio * 100)} %"


def _grade(
    code: str, label_en: str, label_vi: str, value: float, good: float, bad: float
) -> Reason:
    """The reason of a figure past its ``good`` mark (not ready past ``bad``)."""
    render = _pct if code == "loss" else _ms
    if value > bad:
        severity, limit = State.NOT_READY, bad
    else:
        severity, limit = State.DEGRADED, good
    text = f"{render(value)} > {render(limit)}"
    return Reason(code, severity, f"{label_en} {text}", f"{label_vi} {text}")


def judge_own(site: Site, rounds: Sequence[SiteRound], now: float) -> Verdict:
    """A site's verdict from its own measurements alone."""
    if not rounds:
        reason = Reason("no_data", State.UNKNOWN, "not probed yet", "chưa được đo")
        return Verdict(site.id, State.UNKNOWN, (reason,), None, None, None)
    last = rounds[-1]
    bursts = [r.burst for sr in rounds for r in sr.results if r.burst is not None]
    quality = path_quality(bursts)
    latest_icmp = last.result("icmp")
    reasons: list[Reason] = []
    up: bool | None = None
    if latest_icmp is not None:
        burst = latest_icmp.burst
        up = burst is not None and burst.received > 0
        if not up:
            sent = burst.sent if burst is not None else 0
            detail = burst.error if burst is not None else None
            if sent:
                en = f"no reply to {sent} echoes" + (f" ({detail})" if detail else "")
                vi = f"không phản hồi {sent} gói ping" + (
                    f" ({in_vietnamese(detail)})" if detail else "")
            else:
                en = latest_icmp.reason or detail or "not probed"
                vi = in_vietnamese(latest_icmp.reason or detail or "") or "chưa được đo"
            reasons.append(Reason("no_reply", State.NOT_READY, en, vi))
    if quality is not None and quality.sent and up is not False:
        t: Thresholds = site.thresholds
        # (graded only past the good mark: a healthy site, the usual case, grades nothing)
        if quality.loss_ratio > t.loss_good:
            reasons.append(_grade("loss", "loss", "mất gói", quality.loss_ratio,
                                  t.loss_good, t.loss_bad))
        if quality.rtt is not None and quality.rtt.avg > t.rtt_good:
            reasons.append(_grade("rtt", "RTT", "độ trễ", quality.rtt.avg, t.rtt_good,
                                  t.rtt_bad))
        if quality.jitter is not None and quality.jitter > t.jitter_good:
            reasons.append(_grade("jitter", "jitter", "jitter", quality.jitter,
                                  t.jitter_good, t.jitter_bad))
    if site.checks:
        reasons.extend(_check_reasons(site, last))
    if now - last.started_at > STALE_AFTER_INTERVALS * site.interval + site.longest_probe:
        age = now - last.started_at
        reasons.append(Reason("stale", State.UNKNOWN, f"no probe for {age:.0f} s",
                              f"không có kết quả đo trong {age:.0f} giây"))
    if not reasons:
        return Verdict(site.id, State.READY, (), up, quality, last.started_at)
    state = _worst(reasons)
    reasons.sort(key=lambda reason: RANK[reason.severity])
    return Verdict(site.id, state, tuple(reasons), up, quality, last.started_at)


def _check_reasons(site: Site, last: SiteRound) -> list[Reason]:
    """Service checks count as of the latest round: a dead SIP stack is dead now."""
    required = {check.name: check.required for check in site.checks}
    reasons: list[Reason] = []
    for result in last.results:
        if result.kind == "icmp" or result.check not in required:
            continue
        code = f"check:{result.check}"
        # A probe that words its reason in Vietnamese too (a packet train) says it so.
        text_vi = result.details.get("reason_vi") or in_vietnamese(result.reason or "")
        if not result.ok:
            severity = State.NOT_READY if required[result.check] else State.DEGRADED
            text = result.reason or f"{result.check} check failed"
            reasons.append(Reason(code, severity, text,
                                  f"kiểm tra {result.check} lỗi"
                                  + (f": {text_vi}" if text_vi else "")))
        elif result.reason:  # passed, with a warning (a certificate about to expire)
            reasons.append(Reason(code, State.DEGRADED, result.reason,
                                  f"cảnh báo {result.check}: {text_vi}"))
    return reasons


def _worst(reasons: Sequence[Reason]) -> State:
    if not reasons:
        return State.READY
    return min((reason.severity for reason in reasons), key=RANK.__getitem__)


def judge_all(
    inventory: Inventory, windows: Mapping[str, Sequence[SiteRound]], now: float
) -> dict[str, Verdict]:
    """Verdicts for every site, parents before children (see ``judge_under``)."""
    verdicts: dict[str, Verdict] = {}
    for site, _depth in inventory.walk():
        parent = verdicts.get(site.parent) if site.parent is not None else None
        verdicts[site.id] = judge_under(
            judge_own(site, windows.get(site.id, ()), now), parent, inventory
        )
    return verdicts


def judge_under(own: Verdict, parent: Verdict | None, inventory: Inventory) -> Verdict:
    """A site's own verdict in the light of its parent's.

    A site that fails its own probes while its parent is down (no reply, or itself
    parent_down) is ``parent_down``: the fault is upstream, not at the site.
    """
    if (
        parent is None
        or own.state != State.NOT_READY
        or own.up is not False
        or not (parent.up is False or parent.state == State.PARENT_DOWN)
    ):
        return own
    parent_site = inventory.sites[parent.site_id]
    reason = Reason(
        "parent_down",
        State.PARENT_DOWN,
        f"parent {parent_site.name} ({parent_site.id}) is down",
        f"cấp trên {parent_site.name} ({parent_site.id}) mất kết nối",
    )
    return Verdict(
        own.site_id, State.PARENT_DOWN, (reason, *own.reasons), own.up, own.quality,
        own.last_probe,
    )


# What a failing site's probes may have failed for while the monitor itself is cut off:
# not the site. Degraded and ready verdicts stand (something answered).
_SUSPECT = frozenset({State.NOT_READY, State.PARENT_DOWN})


def judge_isolated(verdict: Verdict, since: str | None) -> Verdict:
    """A site's final verdict while the vantage is isolated (``since``: when it was found
    cut off, as a clock time people read, "08:02"; None when it is not): a failure is
    ``unknown``, its measured reasons kept but no longer counted as the site's fault.
    Pure: the isolation is an input, decided in one place (``bridgemon.vantage``)."""
    if since is None or verdict.state not in _SUSPECT:
        return verdict
    reason = Reason(
        "vantage_isolated", State.UNKNOWN,
        f"monitor's own link is down since {since}",
        f"đường truyền của máy giám sát bị mất từ {since}",
    )
    kept = tuple(dataclasses.replace(r, severity=State.UNKNOWN) if r.severity in _SUSPECT
                 else r for r in verdict.reasons if r.code != "parent_down")
    return dataclasses.replace(verdict, state=State.UNKNOWN, reasons=(reason, *kept))
