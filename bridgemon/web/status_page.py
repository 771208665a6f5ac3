"""The status page at ``/``: what a technician sees in a browser, in Vietnamese.

Renders a Snapshot only (no live state), like /metrics.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2

from bridgemon import __version__
from bridgemon.events import ZONE
from bridgemon.readiness import STATE_VI, State
from bridgemon.snapshot import Snapshot

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bridgemon.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_URGENCY = {State.NOT_READY: 0, State.PARENT_DOWN: 1, State.UNKNOWN: 2, State.DEGRADED: 3}


def _vn(number: float | None, digits: int = 1) -> str:
    """Vietnamese decimal comma: 12,5."""
    return "—" if number is None else f"{number:.{digits}f}".replace(".", ",")


def render_status(snap: Snapshot) -> str:
    inventory = snap.inventory
    counts = {state: 0 for state in State}
    rows: list[dict[str, Any]] = []
    problems: list[tuple[int, dict[str, Any]]] = []
    for site, depth in inventory.walk():
        verdict = snap.verdicts.get(site.id)
        state = verdict.state if verdict else State.UNKNOWN
        counts[state] += 1
        quality = verdict.quality if verdict else None
        rtt = quality.rtt if quality else None
        row = {
            "id": site.id, "name": site.name, "address": site.address, "depth": depth,
            "level": inventory.level(site.level).name, "state": state.value,
            "label": STATE_VI[state],
            "rtt": _vn(rtt.avg * 1000 if rtt else None),
            "jitter": _vn(quality.jitter * 1000 if quality and quality.jitter is not None
                          else None),
            "loss": f"{_vn(quality.loss_ratio * 100)} %" if quality and quality.sent else "—",
            "mos": _vn(quality.mos, 2) if quality and quality.mos is not None else "—",
        }
        rows.append(row)
        if state in _URGENCY:
            parent = inventory.sites.get(site.parent or "")
            contact = site.contact
            problems.append((_URGENCY[state], {
                **row,
                "parent": parent.name if parent else "—",
                "reasons": "; ".join(r.vi for r in verdict.reasons) if verdict else "",
                "contact": " · ".join(x for x in ((contact.name, contact.phone) if contact
                                                  else ()) if x) or "—",
            }))
    problems.sort(key=lambda item: item[0])
    events = []
    latest = snap.latest_runs or {}
    for event in sorted(snap.events, key=lambda e: e.start):
        if event.end.timestamp() < snap.taken_at:
            continue
        report = latest.get(event.id)
        run = None
        if report is not None:
            summary = report["summary"]
            run = {"run_id": report["run_id"],
                   "when": datetime.fromisoformat(report["started_at"]).strftime("%H:%M %d/%m"),
                   "ready": summary.get("ready", 0) + summary.get("degraded", 0),
                   "total": summary.get("total", 0)}
        events.append({"title": event.title,
                       "start": event.start.astimezone(ZONE).strftime("%H:%M %d/%m/%Y"),
                       "participants": len(event.participants), "run": run})
    return _ENV.get_template("status.html.j2").render(
        now=datetime.fromtimestamp(snap.taken_at, ZONE).strftime("%H:%M:%S %d/%m/%Y"),
        total=len(inventory),
        counts=[(state.value, STATE_VI[state], counts[state]) for state in State],
        problems=[row for _, row in problems],
        rows=rows,
        events=events,
        version=__version__,
    )
