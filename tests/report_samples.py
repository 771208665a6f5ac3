"""Realistic test-run report dicts for the report and history tests.

Built from the shipped Quảng Nam inventory's real names (UBND tỉnh Quảng Nam, Thành phố
Tam Kỳ, Phường Tân Thạnh, Xã Ch'ơm, ...), in the shape testrun.py produces (the JSON
contract in docs/testrun.schema.json): a mix of ready, degraded, not ready, parent down and unknown
sites, with ICMP figures, service checks and technician contacts. Deterministic.
"""

from __future__ import annotations

import copy
import itertools
import random
import tomllib
from pathlib import Path
from typing import Any

from bridgemon.readiness import mos

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "20261127T101500-3f9a"
STARTED = "2026-11-27T17:15:00+07:00"
FINISHED = "2026-11-27T17:15:42+07:00"


def icmp_check(
    target: str, *, rtt: float, jitter: float = 1.0, lost: int = 0, count: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """An ICMP check of ``count`` echoes around ``rtt`` ms, ``lost`` of them unanswered."""
    rng = random.Random(seed)
    rtts: list[float | None] = [
        round(max(0.05, rtt + rng.uniform(-jitter, jitter)), 3) for _ in range(count)
    ]
    for index in rng.sample(range(count), lost):
        rtts[index] = None
    replied = sorted(value for value in rtts if value is not None)
    check: dict[str, Any] = {
        "type": "icmp", "name": "icmp", "target": target, "ok": bool(replied),
        "reason": None if replied else f"no reply to {count} echoes",
        "duration_ms": round(count * 100 + (replied[-1] if replied else 1000), 1),
        "sent": count, "received": len(replied), "loss_ratio": round(lost / count, 6),
    }
    if replied:
        diffs = [abs(b - a) for a, b in itertools.pairwise(rtts)
                 if a is not None and b is not None]
        check["rtt_ms"] = {
            "min": replied[0], "avg": round(sum(replied) / len(replied), 4),
            "max": replied[-1], "p95": replied[min(len(replied) - 1, int(0.95 * len(replied)))],
        }
        check["jitter_ms"] = round(sum(diffs) / len(diffs), 4) if diffs else 0.0
    else:
        check["rtt_ms"] = {"min": None, "avg": None, "max": None, "p95": None}
        check["jitter_ms"] = None
    check["rtts_ms"] = rtts
    return check


def sip_check(target: str, ok: bool = True) -> dict[str, Any]:
    return {
        "type": "sip", "name": "sip", "target": f"sip:{target}:5060", "ok": ok,
        "reason": None if ok else "SIP OPTIONS: no answer in 4 s",
        "duration_ms": 12.4 if ok else 4000.0,
        "status_code": 200 if ok else None, "transport": "udp",
    }


def https_check(target: str, ok: bool = True, reason: str | None = None) -> dict[str, Any]:
    return {
        "type": "https", "name": "web", "target": f"https://{target}/", "ok": ok,
        "reason": reason, "duration_ms": 85.2, "status": 200 if ok else None,
        "tls_verified": True, "tls_version": "TLSv1.3", "cert_not_after": 1796000000,
    }


def site(
    id: str, name: str, level: str, parent: str | None, parent_name: str | None,
    address: str, verdict: str, *, reasons: list[tuple[str, str]] = (),  # type: ignore[assignment]
    checks: list[dict[str, Any]] | None = None, contact: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    checks = checks or []
    icmp = next((c for c in checks if c["type"] == "icmp"), None)
    score = None
    if icmp is not None and icmp["rtt_ms"]["avg"] is not None:
        score = round(mos(icmp["rtt_ms"]["avg"] / 1000, icmp["jitter_ms"] / 1000,
                          icmp["loss_ratio"]), 3)
    elif icmp is not None:
        score = 1.0
    return {
        "id": id, "name": name, "level": level, "parent": parent, "parent_name": parent_name,
        "address": address, "verdict": verdict,
        "reasons": [en for en, _ in reasons], "reasons_vi": [vi for _, vi in reasons],
        "mos": score, "contact": contact, "checks": checks,
    }


def sample_sites() -> list[dict[str, Any]]:
    """Thirteen sites of the province, Tam Kỳ, Hội An and Tây Giang, in inventory order."""
    province, tam_ky, hoi_an, tay_giang = (
        "UBND tỉnh Quảng Nam", "Thành phố Tam Kỳ", "Thành phố Hội An", "Huyện Tây Giang")
    return [
        site("49", province, "province", None, None, "127.49.0.1", "ready",
             checks=[icmp_check("127.49.0.1", rtt=0.8, jitter=0.1, seed=1),
                     sip_check("127.49.0.1"), https_check("127.49.0.1")],
             contact={"name": "Trần Thị Thu Hà", "phone": "0905 123 456",
                      "email": "ha.ttt@quangnam.gov.vn"}),
        site("502", tam_ky, "district", "49", province, "127.49.2.1", "degraded",
             reasons=[("jitter 35.4 ms > 30 ms", "jitter 35.4 ms > 30 ms")],
             checks=[icmp_check("127.49.2.1", rtt=90.0, jitter=66.0, seed=2),
                     sip_check("127.49.2.1")],
             contact={"name": "Lê Văn Đức", "phone": "0235 3812 345", "email": None}),
        site("20335", "Phường Tân Thạnh", "commune", "502", tam_ky, "127.49.2.10", "not_ready",
             reasons=[("loss 8 % > 5 %", "mất gói 8 % > 5 %")],
             checks=[icmp_check("127.49.2.10", rtt=22.0, jitter=3.0, lost=4, seed=3)],
             contact={"name": "Nguyễn Thị Ánh Tuyết", "phone": "0914 222 333", "email": None}),
        site("20338", "Phường Phước Hòa", "commune", "502", tam_ky, "127.49.2.11", "not_ready",
             reasons=[("SIP OPTIONS: no answer in 4 s",
                       "kiểm tra sip lỗi: SIP OPTIONS: no answer in 4 s")],
             checks=[icmp_check("127.49.2.11", rtt=12.5, jitter=0.8, seed=4),
                     sip_check("127.49.2.11", ok=False)],
             contact={"name": "Phạm Quốc Hưng", "phone": "0988 765 432", "email": None}),
        site("20341", "Phường An Mỹ", "commune", "502", tam_ky, "127.49.2.12", "ready",
             checks=[icmp_check("127.49.2.12", rtt=9.7, jitter=0.5, seed=5)]),
        site("20344", "Phường Hòa Hương", "commune", "502", tam_ky, "127.49.2.13", "degraded",
             reasons=[("RTT 182.4 ms > 150 ms", "độ trễ 182.4 ms > 150 ms")],
             checks=[icmp_check("127.49.2.13", rtt=182.0, jitter=4.0, seed=6)]),
        site("503", hoi_an, "district", "49", province, "127.49.3.1", "not_ready",
             reasons=[("no reply to 50 echoes", "không phản hồi 50 gói ping")],
             checks=[icmp_check("127.49.3.1", rtt=0, lost=50, seed=7)],
             contact={"name": "Huỳnh Tấn Phát", "phone": "0235 3861 111", "email": None}),
        site("20398", "Phường Minh An", "commune", "503", hoi_an, "127.49.3.10", "parent_down",
             reasons=[("parent Thành phố Hội An (503) is down",
                       "cấp trên Thành phố Hội An (503) mất kết nối"),
                      ("no reply to 50 echoes", "không phản hồi 50 gói ping")],
             checks=[icmp_check("127.49.3.10", rtt=0, lost=50, seed=8)]),
        site("20401", "Phường Tân An", "commune", "503", hoi_an, "127.49.3.11", "parent_down",
             reasons=[("parent Thành phố Hội An (503) is down",
                       "cấp trên Thành phố Hội An (503) mất kết nối"),
                      ("no reply to 50 echoes", "không phản hồi 50 gói ping")],
             checks=[icmp_check("127.49.3.11", rtt=0, lost=50, seed=9)]),
        site("20347", "Phường An Xuân", "commune", "502", tam_ky, "127.49.2.14", "ready",
             checks=[icmp_check("127.49.2.14", rtt=11.2, jitter=0.6, seed=12)]),
        site("504", tay_giang, "district", "49", province, "127.49.4.1", "degraded",
             reasons=[("certificate expires in 9 days",
                       "cảnh báo web: certificate expires in 9 days")],
             checks=[icmp_check("127.49.4.1", rtt=35.0, jitter=2.0, lost=0, seed=10),
                     https_check("127.49.4.1", reason="certificate expires in 9 days")]),
        site("20437", "Xã Ch'ơm", "commune", "504", tay_giang, "127.49.4.10", "unknown",
             reasons=[("not probed yet", "chưa được đo")],
             contact={"name": "Bh'riu Thị Hoa", "phone": "0376 555 010", "email": None}),
        site("20440", "Xã Ga Ri", "commune", "504", tay_giang, "127.49.4.11", "not_ready",
             reasons=[("RTT 1234.5 ms > 300 ms", "độ trễ 1234.5 ms > 300 ms")],
             checks=[icmp_check("127.49.4.11", rtt=1234.5, jitter=2.0, seed=11)]),
    ]


def summary(sites: list[dict[str, Any]]) -> dict[str, int]:
    counts = {v: 0 for v in ("ready", "degraded", "not_ready", "parent_down", "unknown")}
    for entry in sites:
        counts[entry["verdict"]] += 1
    return {"total": len(sites), **counts}


def header(**overrides: Any) -> dict[str, Any]:
    """The report without its sites, as testrun.py passes it to History.begin()."""
    base: dict[str, Any] = {
        "run_id": RUN_ID,
        "started_at": STARTED,
        "finished_at": None,
        "status": "running",
        "event": "hop-ubnd-2026-12",
        "event_title": "Hội nghị trực tuyến UBND tỉnh tháng 12",
        "event_start": "2026-12-01T08:00:00+07:00",
        "selector": "49,under:502,under:503,under:504",
        "trigger": "cli",
        "operator": "root@cau-truyen-hinh",
        "count": 50,
        "spacing_ms": 100,
        "summary": None,
    }
    base.update(overrides)
    return base


def sample_report(**overrides: Any) -> dict[str, Any]:
    """A complete run over the thirteen sample sites."""
    sites = sample_sites()
    report = header(finished_at=FINISHED, status="complete", summary=summary(sites))
    report.update(overrides)
    report["sites"] = sites
    return copy.deepcopy(report)


def big_report(limit: int | None = None) -> dict[str, Any]:
    """Every site of config/sites.toml (260), a few impaired, for width and scale tests."""
    inventory = tomllib.loads((REPO / "config" / "sites.toml").read_text(encoding="utf-8"))
    rows = inventory["sites"][:limit]
    names = {row["id"]: row["name"] for row in rows}
    rng = random.Random(49)
    sites = []
    for index, row in enumerate(rows):
        roll = rng.random()
        parent, addr = row.get("parent"), row["address"]
        if roll < 0.05:
            verdict, reasons = "not_ready", [("loss 12 % > 5 %", "mất gói 12 % > 5 %")]
            checks = [icmp_check(addr, rtt=30, jitter=5, lost=6, seed=index)]
        elif roll < 0.10:
            verdict, reasons = "degraded", [("RTT 160.3 ms > 150 ms", "độ trễ 160.3 ms > 150 ms")]
            checks = [icmp_check(addr, rtt=160, jitter=2, seed=index)]
        else:
            verdict, reasons = "ready", []
            checks = [icmp_check(addr, rtt=rng.uniform(1, 40), jitter=1, seed=index)]
        sites.append(site(row["id"], row["name"], row["level"], parent, names.get(parent),
                          addr, verdict, reasons=reasons, checks=checks))
    report = header(finished_at=FINISHED, status="complete", summary=summary(sites),
                    event=None, event_title=None, event_start=None, selector=None)
    report["sites"] = sites
    return report
