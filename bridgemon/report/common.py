"""What every report format shares: number and time formatting, the order of sites.

Everything here reads the test-run report dict (the JSON contract, docs/testrun.schema.json) and
nothing else: no inventory, no live state, no clock. A run stored years ago must render
exactly as it did the day it ran, so no output may depend on the machine's locale, time
zone or configuration. The verdicts' names, orders and words are ``bridgemon.verdicts``'s,
so the dashboard, the API and the reports say the same words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from bridgemon import verdicts
from bridgemon.testrun_schema import CheckReport, Report, RttMs, SiteReport, StampDirection
from bridgemon.verdicts import Summary

UNKNOWN = verdicts.State.UNKNOWN  # what a site without a verdict counts and sorts as

TRIGGER_VI = {"cli": "dòng lệnh", "schedule": "tự động theo lịch", "api": "qua API"}
STATUS_VI = {"complete": "hoàn tất", "running": "đang chạy", "incomplete": "bị gián đoạn"}
DASH = "—"


def summary_of(report: Report) -> Summary:
    """The run's counts: the stored summary, or counted from the sites while it has none
    (a run still going, or one cut short, has only the sites finished so far)."""
    stored = report.get("summary")
    if isinstance(stored, Mapping) and "total" in stored:
        return verdicts.summary(int(stored["total"]), stored)
    return verdicts.count(site.get("verdict", verdicts.State.UNKNOWN)
                          for site in report.get("sites", ()))


def icmp_of(site: SiteReport) -> CheckReport | None:
    """The site's ICMP check (path figures: RTT, jitter, loss), if it has one."""
    for check in site.get("checks") or ():
        if check.get("type") == "icmp":
            return check
    return None


def path_figures(site: SiteReport) -> dict[str, float | int | None]:
    """RTT avg/p95/min/max and jitter in ms, loss as a ratio, echoes sent/received."""
    icmp: CheckReport | dict[str, None] = icmp_of(site) or {}
    rtt: RttMs | dict[str, None] = icmp.get("rtt_ms") or {}
    return {
        "sent": icmp.get("sent"),
        "received": icmp.get("received"),
        "loss_ratio": icmp.get("loss_ratio"),
        "rtt_min": rtt.get("min"),
        "rtt_avg": rtt.get("avg"),
        "rtt_max": rtt.get("max"),
        "rtt_p95": rtt.get("p95"),
        "jitter": icmp.get("jitter_ms"),
    }


def failing_checks(site: SiteReport) -> list[CheckReport]:
    """Service checks (not the ICMP path) that failed."""
    return [c for c in site.get("checks") or () if c.get("type") != "icmp" and not c.get("ok")]


def problems(site: SiteReport, lang: str = "vi") -> list[str]:
    """Why the site is not simply ready, in words: its reasons, then any failing service
    check the reasons do not already name (so a failure is never silently dropped)."""
    if lang == "vi":
        lines = [vi_numbers(r) for r in site.get("reasons_vi") or site.get("reasons") or ()]
    else:
        lines = list(site.get("reasons") or ())
    for check in failing_checks(site):
        name = str(check.get("name") or check.get("type") or "?")
        if not any(name in line for line in lines):
            why = check.get("reason") or ("lỗi" if lang == "vi" else "failed")
            lines.append(f"{name}: {vi_numbers(str(why)) if lang == 'vi' else why}")
    return lines


# --- numbers -------------------------------------------------------------------------
# Vietnamese writing (TCVN, and every government document): decimal comma, dot between
# thousands: "1.234,5 ms". Human formats (table, HTML) use it; machine formats (JSON,
# CSV by default) keep plain numbers.


_SWAP_SEPARATORS = str.maketrans(",.", ".,")


def num(value: float | int | None, digits: int = 1, *, decimal: str = ",") -> str:
    """``12.5 -> "12,5"``; ``None`` (no figure: site down, never probed) -> "—"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    text = f"{value:,.{digits}f}"
    if decimal == ",":
        text = text.translate(_SWAP_SEPARATORS)
    return text


def pct(ratio: float | None, digits: int = 1) -> str:
    """``0.075 -> "7,5 %"``, ``0.08 -> "8 %"`` (a trailing ",0" dropped, as in reasons)."""
    if ratio is None:
        return DASH
    text = num(ratio * 100, digits)
    if "," in text:
        text = text.rstrip("0").rstrip(",")
    return f"{text} %"


# A decimal point inside a number followed by a unit (as readiness writes reasons:
# "mất gói 7.5 % > 5 %"). Only numbers with a unit are touched, so an address such as
# 127.0.0.1 or a version such as TLS 1.2 stays as written.
_DECIMAL_WITH_UNIT = re.compile(r"(?<![\d.,])(\d+)\.(\d+)(?=\s?(?:%|ms\b|s\b|giây\b))")


def vi_numbers(text: str) -> str:
    """Reason text with its measured numbers in Vietnamese style ("7.5 %" -> "7,5 %")."""
    return _DECIMAL_WITH_UNIT.sub(r"\1,\2", text)


# --- time ----------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def when(value: str | None, *, seconds: bool = True) -> str:
    """``2026-11-27T17:15:00+07:00 -> "17:15:00 27/11/2026"``, in the offset the report
    recorded (never converted to this machine's zone, which may differ years later).
    An offset other than Vietnam's +07:00 is shown, so such a time cannot be misread."""
    moment = parse_time(value)
    if moment is None:
        return value or DASH
    text = moment.strftime("%H:%M:%S %d/%m/%Y" if seconds else "%H:%M %d/%m/%Y")
    offset = moment.utcoffset()
    if offset is None:
        return text
    minutes = int(offset.total_seconds() // 60)
    if minutes != 7 * 60:
        sign = "+" if minutes >= 0 else "-"
        text += f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text


def date_words(value: str | None) -> str:
    """``"ngày 27 tháng 11 năm 2026"``, the date line of a Vietnamese document."""
    moment = parse_time(value)
    if moment is None:
        return "ngày ... tháng ... năm ......"
    return f"ngày {moment.day:02d} tháng {moment.month:02d} năm {moment.year}"


def duration_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None or (a.tzinfo is None) != (b.tzinfo is None):
        return None
    return (b - a).total_seconds()


# --- order ---------------------------------------------------------------------------


def by_severity(sites: Sequence[SiteReport]) -> list[SiteReport]:
    """Worst verdict first; within a verdict, the order of the report (inventory order)."""
    return sorted(sites, key=lambda site: verdicts.rank(site.get("verdict", UNKNOWN)))


def grouped(
    sites: Sequence[SiteReport],
) -> list[tuple[str | None, str, list[SiteReport]]]:
    """Sites grouped by parent: ``[(parent id, parent name, sites worst first)]``.

    Groups come worst first too (by their worst site, then by first appearance), so the
    top of the table is where the work is.
    """
    groups: dict[str | None, list[SiteReport]] = {}
    names: dict[str | None, str] = {}
    for site in sites:
        parent = site.get("parent")
        groups.setdefault(parent, []).append(site)
        if parent not in names or names[parent] == parent:
            names[parent] = site.get("parent_name") or parent or ""
    ordered = sorted(
        groups.items(),
        key=lambda item: min(verdicts.rank(s.get("verdict", UNKNOWN)) for s in item[1]),
    )
    return [(parent, names[parent], by_severity(members)) for parent, members in ordered]


# --- path tests: STAMP trains and path MTU --------------------------------------------
# A stamp check carries its train's figures (stamp.result.TrainResult.to_dict), an mtu
# check its outcome (stamp.pmtu.PmtuResult.to_dict); docs/testrun.schema.json's
# $defs/stamp and $defs/mtu. Every format shows them from these helpers, so the table,
# the page and the sheet say the same figures.

DIRECTION_VI = {"downlink": "xuống", "uplink": "lên", "round_trip": "khứ hồi"}
MTU_OUTCOME_VI = {
    "ok": "đạt",
    "frag_needed": "cần phân mảnh",
    "black_hole": "hố đen MTU",
    "local_mtu": "MTU máy giám sát nhỏ hơn",
    "no_reply": "không trả lời ping",
}


def train_checks(site: SiteReport) -> list[CheckReport]:
    return [c for c in site.get("checks") or () if c.get("type") == "stamp"]


def mtu_checks(site: SiteReport) -> list[CheckReport]:
    return [c for c in site.get("checks") or () if c.get("type") == "mtu"]


def train_directions(check: CheckReport) -> list[tuple[str, StampDirection]]:
    """(direction, its figures): downlink and uplink where the reflector tells them apart
    (a stateful one), else the round trip alone; none for a train that got no answer."""
    directions: list[tuple[str, StampDirection]] = []
    for name in ("downlink", "uplink"):
        stats = check.get(name)
        if isinstance(stats, Mapping) and stats.get("loss_ratio") is not None:
            directions.append((name, stats))  # type: ignore[arg-type]
    trip = check.get("round_trip")
    if not directions and isinstance(trip, Mapping):
        # The round trip's loss and jitter; its rate is the uplink's (what came back).
        uplink = check.get("uplink")
        carried = uplink.get("carried_bps") if isinstance(uplink, Mapping) else None
        directions.append(("round_trip", {
            "loss_ratio": trip.get("loss_ratio"), "jitter_ms": trip.get("jitter_ms"),
            "reordered": trip.get("reordered", 0), "duplicates": trip.get("duplicates", 0),
            "carried_bps": carried,
        }))
    return directions


def train_title(check: CheckReport, *, decimal: str = ",") -> str:
    """ "video: 2 Mbit/s, 1200 B, 10 s" — what was sent."""
    parts = [rate(check.get("rate_bps"), decimal=decimal)]
    if check.get("size") is not None:
        parts.append(f"{check.get('size')} B")
    if check.get("duration_s") is not None:
        seconds = num(check.get("duration_s"), 1, decimal=decimal)
        parts.append(f"{seconds.removesuffix(decimal + '0')} s")
    return f"{check.get('name') or 'stamp'}: {', '.join(parts)}"


def rate(bps: float | int | None, *, decimal: str = ",") -> str:
    """``1_980_000 -> "1,98 Mbit/s"``; "—" without a figure."""
    if bps is None:
        return DASH
    value = float(bps)
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if value >= scale:
            text = num(value / scale, 2, decimal=decimal).rstrip("0").rstrip(decimal)
            return f"{text} {unit}"
    return f"{num(value, 0, decimal=decimal)} bit/s"


def train_delay(check: CheckReport) -> RttMs | None:
    """Round-trip delay min/avg/p95/max in ms, or None when nothing came back."""
    trip = check.get("round_trip")
    if not isinstance(trip, Mapping):
        return None
    rtt = trip.get("rtt_ms")
    return rtt if isinstance(rtt, Mapping) else None


def mtu_outcome(check: CheckReport, lang: str = "vi") -> str:
    """The MTU check's outcome in words: "đạt: gói 1500 B đi qua" or its reason."""
    outcome = str(check.get("outcome") or "")
    packet = check.get("packet_size")
    if check.get("ok"):
        if lang == "vi":
            return f"đạt: gói {packet} B có cờ DF đi qua"
        return f"passed: {packet}-byte packets with DF set get through"
    if lang == "vi":
        why = check.get("reason_vi") or check.get("reason") or MTU_OUTCOME_VI.get(outcome,
                                                                                 outcome)
        return vi_numbers(str(why))
    return str(check.get("reason") or outcome or "failed")
