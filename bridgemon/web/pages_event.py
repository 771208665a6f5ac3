"""The conference page at ``/events/{id}``: who takes part, each site's state now and in
the latest test run, the counts of both, and the report of that run.

Operators' forms (run the test now, take or release a site with a note) are rendered here
from what pages.py adds to the context (``acks``, ``can_run``, the CSRF token) and posted
to page_actions.py; the live parts carry the counts and rows, refreshed in place. Built on
the loop a slice at a time from a Snapshot (at most 300 rows shown of thousands).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bridgemon.cooperative import Steps, drain
from bridgemon.events import ZONE
from bridgemon.snapshot import Snapshot
from bridgemon.verdicts import CAN_JOIN, RANK, STATES, WORDS_VI, State, count, known, words_vi
from bridgemon.web.pages_common import clock, render_page_steps, render_parts_steps
from bridgemon.web.status_page import SLICE, problem_row

LIVE_PARTS = ("event_counts", "event_sites")
ROWS_SHOWN = 300  # participants listed, worst first; a province-wide event has thousands


def event_context(snap: Snapshot, event_id: str) -> dict[str, Any] | None:
    return drain(event_context_steps(snap, event_id))


def event_context_steps(snap: Snapshot, event_id: str) -> Steps[dict[str, Any] | None]:
    """The page's context, pausing every 500 participants (cooperative.py): a
    province-wide conference has thousands, and operators keep this page open."""
    event = next((e for e in snap.events if e.id == event_id), None)
    if event is None:
        return None
    inventory = snap.inventory
    report = (snap.latest_runs or {}).get(event.id)
    run_sites = report["sites"] if report else []
    tested: dict[str, Any] = {}
    for start in range(0, len(run_sites), SLICE):
        tested.update((site["id"], site) for site in run_sites[start:start + SLICE])
        yield
    present: list[str] = []
    now_states: list[str] = []
    participants = event.participants
    for start in range(0, len(participants), SLICE):
        for site_id in participants[start:start + SLICE]:
            if site_id in inventory.sites:  # a site may have left since it was planned
                present.append(site_id)
                verdict = snap.verdict(site_id)
                now_states.append((verdict.state if verdict else State.UNKNOWN).value)
        yield
    # Worst first, as the technicians work through them; tree order among equals. Only the
    # rows shown are built.
    shown = sorted(range(len(present)), key=lambda i: RANK[now_states[i]])[:ROWS_SHOWN]
    yield
    rows = []
    for index in shown:
        site_id = present[index]
        row = problem_row(snap, site_id)
        before = tested.get(site_id)
        rows.append({**row,
                     "run_state": known(before["verdict"]).value if before else None,
                     "run_label": words_vi(before["verdict"]) if before else "chưa kiểm tra",
                     "run_reasons": "; ".join(before.get("reasons_vi") or before["reasons"])
                     if before else ""})
    now_summary = count(now_states)
    run = None
    if report is not None:
        summary = report["summary"] or count(site["verdict"] for site in report["sites"])
        run = {"run_id": report["run_id"],
               "when": datetime.fromisoformat(report["started_at"]).astimezone(ZONE)
               .strftime("%H:%M %d/%m/%Y"),
               "counts": [(state.value, WORDS_VI[state], summary[state.value])
                          for state in STATES],
               "total": summary["total"]}
    return {
        "now": clock(snap.taken_at, with_year=True),
        "event": {"id": event.id, "title": event.title,
                  "start": event.start.astimezone(ZONE).strftime("%H:%M %d/%m/%Y"),
                  "end": event.end.astimezone(ZONE).strftime("%H:%M %d/%m/%Y"),
                  "selector": event.selector},
        "counts": [(state.value, WORDS_VI[state], now_summary[state.value])
                   for state in STATES],
        "total": len(present),
        "hidden": len(present) - len(rows),
        "not_ready": sum(1 for state in now_states if known(state) not in CAN_JOIN),
        "rows": rows,
        "run": run,
        "live_url": f"/events/{quote(event.id, safe='')}?live=1",
    }


def render_event(context: Mapping[str, Any]) -> str:
    return drain(render_event_steps(context))


def render_event_steps(context: Mapping[str, Any]) -> Steps[str]:
    return (yield from render_page_steps("event.html.j2", context))


def live_event(context: Mapping[str, Any]) -> Mapping[str, object]:
    return drain(live_event_steps(context))


def live_event_steps(context: Mapping[str, Any]) -> Steps[Mapping[str, object]]:
    parts = yield from render_parts_steps(LIVE_PARTS, context)
    return {"updated": context["now"], "parts": parts}
