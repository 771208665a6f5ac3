"""The site page at ``/sites/{id}``: one site for the technician who is dealing with it.

Its verdict since when and why, whom to call, its checks of the latest round, the last
hours of RTT, loss and jitter as small server-drawn SVG charts (no chart library, no
script: the page's CSP allows none inline), its recent test runs, its parent and children.
Rendered off the event loop from a Snapshot and from what the handler copied on the loop
(the trend's points, the test-run listing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from bridgemon.cooperative import Steps
from bridgemon.inventory import Inventory
from bridgemon.probes.reasons_vi import in_vietnamese
from bridgemon.snapshot import Snapshot
from bridgemon.testrun_schema import RunListing
from bridgemon.trend import BUCKET, POINTS, Point
from bridgemon.verdicts import WORDS_VI, State
from bridgemon.web.pages_common import ago, clock, render_page_steps, render_parts_steps, tel, vn
from bridgemon.web.status_page import problem_row

LIVE_PARTS = ("site_state", "site_checks", "site_charts", "site_children")
RUNS_SHOWN = 10
CHILDREN_SHOWN = 300  # a district has a few dozen communes; a province's root, ~20 districts

# The chart's drawing box, in SVG user units (the SVG scales to its container).
_W, _H, _LEFT, _TOP, _BOTTOM = 320.0, 120.0, 34.0, 8.0, 18.0


def _nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def chart(points: Sequence[Point], field: str, title: str, unit: str) -> dict[str, Any]:
    """One measure of the trend as polylines (one per run of points without a gap)."""
    values = [getattr(point, field) for point in points]
    known = [v for v in values if v is not None]
    top = _nice_ceiling(max(known) if known else 0.0)
    width = _W - _LEFT - 4
    height = _H - _TOP - _BOTTOM
    step = width / max(1, len(points) - 1)
    segments: list[str] = []
    current: list[str] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        x = _LEFT + index * step
        y = _TOP + height * (1 - min(value, top) / top)
        current.append(f"{x:.1f},{y:.1f}")
    if current:
        segments.append(" ".join(current))
    # A lone point is a polyline of one vertex, which draws nothing: make it a dot's width.
    segments = [s if " " in s else f"{s} {float(s.split(',')[0]) + 1.5:.1f},{s.split(',')[1]}"
                for s in segments]
    latest = next((v for v in reversed(values) if v is not None), None)
    return {
        "title": title, "unit": unit, "segments": segments, "top": vn(top, 0 if top >= 1 else 2),
        "latest": vn(latest, 2 if field == "loss_pct" else 1) if latest is not None else "—",
        "empty": not known,
        "start": clock(points[0].at) if points else "", "end": clock(points[-1].at + BUCKET)
        if points else "",
        "box": {"w": _W, "h": _H, "left": _LEFT, "top": _TOP, "bottom": _H - _BOTTOM,
                "right": _W - 4, "mid": _TOP + height / 2},
    }


def _runs_with(inventory: Inventory, snap: Snapshot, site_id: str,
               runs: Sequence[RunListing]) -> list[dict[str, Any]]:
    """The listed runs that tested this site: an event's whose participants hold it, or a
    selector's that selects it (each selector evaluated once)."""
    participants = {event.id: event.participants for event in snap.events}
    selected: dict[str, bool] = {}
    out = []
    for run in runs:
        event = run.get("event")
        selector = run.get("selector")
        if event is not None and event in participants:
            holds = site_id in participants[event]
        elif selector:
            if selector not in selected:
                try:
                    selected[selector] = any(s.id == site_id for s in inventory.select(selector))
                except Exception:  # a selector of an older inventory: not shown, not fatal
                    selected[selector] = False
            holds = selected[selector]
        else:
            holds = False
        if not holds:
            continue
        summary = run.get("summary")
        out.append({"run_id": run["run_id"], "started": run["started_at"][:16].replace("T", " "),
                    "title": run.get("event_title") or selector or "",
                    "status": run["status"],
                    "summary": (f"{summary['ready'] + summary['degraded']}/{summary['total']} "
                                "sẵn sàng") if summary else "đang chạy"})
        if len(out) >= RUNS_SHOWN:
            break
    return out


def site_context_steps(snap: Snapshot, site_id: str, points: Sequence[Point],
                       runs: Sequence[RunListing]) -> Steps[dict[str, Any] | None]:
    """The site page's context, pausing between its parts (see cooperative.py)."""
    inventory = snap.inventory
    site = inventory.sites.get(site_id)
    if site is None:
        return None
    view = snap.sites.get(site_id)
    row = problem_row(snap, site_id)
    checks = []
    for result in view.latest if view else ():
        checks.append({
            "name": result.check, "kind": result.kind, "target": result.target,
            "ok": result.ok,
            "reason": (result.details.get("reason_vi") or in_vietnamese(result.reason))
            if result.reason else "",
            "ms": vn(result.duration * 1000, 0),
            "when": clock(result.started_at),
        })
    children = []
    for child_id in inventory.children.get(site_id, ())[:CHILDREN_SHOWN]:
        child = inventory.sites[child_id]
        verdict = snap.verdict(child_id)
        state = verdict.state if verdict else State.UNKNOWN
        children.append({"id": child_id, "name": child.name, "state": state.value,
                         "label": WORDS_VI[state]})
    yield
    charts = []
    for key, title, unit in (("rtt_ms", "Độ trễ (RTT)", "ms"), ("loss_pct", "Mất gói", "%"),
                             ("jitter_ms", "Jitter", "ms")):
        charts.append(chart(points, key, title, unit))
        yield
    shown_runs = _runs_with(inventory, snap, site_id, runs)
    contact = site.contact
    return {
        "now": clock(snap.taken_at, with_year=True),
        "site": {"id": site.id, "name": site.name, "address": site.address,
                 "level": inventory.level(site.level).name, "labels": sorted(site.labels.items())},
        "row": row,
        "reasons": [reason.vi for reason in view.verdict.reasons] if view else [],
        "since_ago": ago(snap.taken_at - view.since) if view and view.since else "",
        "contact": {"name": contact.name, "phone": contact.phone, "email": contact.email,
                    "tel": tel(contact.phone)} if contact else None,
        "checks": checks,
        "charts": charts,
        "chart_span": f"{POINTS * BUCKET / 3600:g} giờ",
        "chart_step": f"{BUCKET / 60:g} phút",
        "children": children,
        "children_total": len(inventory.children.get(site_id, ())),
        "runs": shown_runs,
        "live_url": f"/sites/{quote(site.id, safe='')}?live=1",
    }


def render_site_steps(context: Mapping[str, Any]) -> Steps[str]:
    return render_page_steps("site.html.j2", context)


def live_site_steps(context: Mapping[str, Any]) -> Steps[Mapping[str, object]]:
    parts = yield from render_parts_steps(LIVE_PARTS, context)
    return {"updated": context["now"], "parts": parts}
