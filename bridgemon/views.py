"""Sites and verdicts as JSON-ready dicts: the shape of /api/v1/sites and test-run reports.

One function per thing shown, so the API and the reports cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Any, cast

import orjson

from bridgemon.inventory import Site
from bridgemon.probes.result import ProbeResult, RttStats
from bridgemon.readiness import PathQuality, Verdict
from bridgemon.testrun_schema import CheckReport, RttMs
from bridgemon.verdicts import State


def rounded(value: float, scale: float) -> float:
    """``value`` rounded to ``1/scale`` (a power of ten), as ``round(value, n)`` but ten
    times cheaper (rows are built for every site every round, with a dozen figures each):
    ``floor(value * scale + 0.5) / scale`` divides two exact numbers, so the result is the
    double nearest that decimal and prints as it. Ties round up, not to even."""
    try:
        return math.floor(value * scale + 0.5) / scale
    except (ValueError, OverflowError):  # NaN and infinities stay what they are
        return value


def _ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds to 0.1 µs."""
    if seconds is None:
        return None
    try:
        return math.floor(seconds * 1e7 + 0.5) / 1e4
    except (ValueError, OverflowError):
        return seconds * 1000


def _ms_each(values: tuple[float, ...]) -> list[float | None]:
    """``_ms`` of each value, in one go (an ICMP check's RTTs, every round)."""
    try:
        return [math.floor(value * 1e7 + 0.5) / 1e4 for value in values]
    except (ValueError, OverflowError):
        return [_ms(value) for value in values]


def rtt_json(rtt: RttStats | None) -> RttMs:
    if rtt is None:
        return {"min": None, "avg": None, "max": None, "p95": None}
    return {"min": _ms(rtt.min), "avg": _ms(rtt.avg), "max": _ms(rtt.max), "p95": _ms(rtt.p95)}


def quality_json(quality: PathQuality | None) -> dict[str, Any]:
    if quality is None:
        return {"sent": 0, "received": 0, "loss_ratio": None, "rtt_ms": rtt_json(None),
                "jitter_ms": None}
    return {
        "sent": quality.sent,
        "received": quality.received,
        "loss_ratio": rounded(quality.loss_ratio, 1e6),
        "rtt_ms": rtt_json(quality.rtt),
        "jitter_ms": _ms(quality.jitter),
    }


def check_json(result: ProbeResult) -> CheckReport:
    """A check as the API and the test-run report show it (schema ``$defs/check``)."""
    out: CheckReport = {
        "type": result.kind,
        "name": result.check,
        "target": result.target,
        "ok": result.ok,
        "reason": result.reason,
        "duration_ms": _ms(result.duration),
    }
    if result.burst is not None:
        burst = result.burst
        sent = len(burst.rtts)
        all_answered = burst.received == sent  # the usual case: the RTTs hold no None
        replied = cast("tuple[float, ...]", burst.rtts) if all_answered else burst.replied
        out["sent"] = sent
        out["received"] = burst.received
        out["loss_ratio"] = rounded((sent - burst.received) / sent, 1e6) if sent else None
        out["rtt_ms"] = rtt_json(RttStats.of(replied))
        out["rtts_ms"] = _ms_each(replied) if all_answered else [_ms(rtt) for rtt in burst.rtts]
        out["jitter_ms"] = (_ms(burst.jitter_sum / burst.jitter_count) if burst.jitter_count
                            else (0.0 if replied else None))
    # What the probe reports of its own (status_code, transport, cert_not_after, ...): the
    # schema's open part, which the type leaves to readers' .get.
    return cast(CheckReport, {**out, **result.details}) if result.details else out


def site_json(
    site: Site, verdict: Verdict | None, latest: tuple[ProbeResult, ...] = ()
) -> dict[str, Any]:
    return {**site_facts_json(site), **site_state_json(verdict, latest)}


def site_facts_json(site: Site) -> dict[str, Any]:
    """What the inventory says of a site: the same until the next reload."""
    return {
        "id": site.id,
        "name": site.name,
        "level": site.level,
        "parent": site.parent,
        "address": site.address,
        "contact": (
            {"name": site.contact.name, "phone": site.contact.phone, "email": site.contact.email}
            if site.contact else None
        ),
        "labels": site.labels,
    }


def site_state_json(verdict: Verdict | None, latest: tuple[ProbeResult, ...] = ()
                    ) -> dict[str, Any]:
    """What was measured and judged of a site: changes every round."""
    state = verdict.state if verdict is not None else State.UNKNOWN
    quality = verdict.quality if verdict is not None else None
    return {
        "verdict": state.value,
        "reasons": [reason.en for reason in verdict.reasons] if verdict else [],
        "reasons_vi": [reason.vi for reason in verdict.reasons] if verdict else [],
        "problems": [reason.code for reason in verdict.reasons] if verdict else [],
        "up": verdict.up if verdict else None,
        "mos": rounded(quality.mos, 1e3) if quality is not None and quality.mos is not None
        else None,
        "window": quality_json(quality),
        "last_probe": verdict.last_probe if verdict else None,
        "checks": [check_json(result) for result in latest],
    }


def site_row(facts: bytes, verdict: Verdict | None, latest: tuple[ProbeResult, ...]) -> bytes:
    """``site_json`` as JSON bytes, ``facts`` being ``site_facts_json`` already encoded:
    the API's rows are built once per round per site, so only the state is encoded."""
    state = encode(site_state_json(verdict, latest))
    return b"".join((facts[:-1], b",", state[1:]))


def encode_facts(site: Site) -> bytes:
    """Kept for the site's lifetime, so copied: orjson returns its 4 KiB working buffer as
    the bytes object (measured: 4,097 bytes allocated for a 51-byte result), 48 MB at
    12,000 sites."""
    return bytes(memoryview(encode(site_facts_json(site))))


def encode(value: object) -> bytes:
    """Compact UTF-8 JSON. orjson, because rows are encoded for every site every round:
    1.4 µs for a site's state where the standard library took 25 (measured here)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
