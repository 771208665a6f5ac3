"""The overview at ``/``: what a technician sees first, on a phone or on the wall, in
Vietnamese.

Counts per verdict and per district (the level below the root), the conferences to come
with how many of their sites are not ready, the sites that need work first (worst first,
with reason, since when, parent and the technician to call), and one page of the full
list; all of it filtered by the query (name without diacritics, code, district,
verdict), so a filtered view is a link one can send. A site someone took for a conference
says who, next to its reason (``extra["taken"]``, copied by the handler on the loop).

Renders a Snapshot only (no live state) and a bounded number of rows, filtering before
building; thread-safe: the web app renders it off the event loop (counting and sorting
12,000 verdicts and a template of 300 rows take tens of milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from bridgemon.cooperative import Steps, drain
from bridgemon.events import ZONE
from bridgemon.inventory import Inventory
from bridgemon.snapshot import Snapshot
from bridgemon.verdicts import CAN_JOIN, RANK, STATES, WORDS_VI, State, count, in_order
from bridgemon.web.pages_common import (
    PerInventory,
    ago,
    clock,
    fold,
    render_page_steps,
    render_parts_steps,
    tel,
    vn,
)

PAGE_SIZE = 100  # rows of the full list per page
PROBLEMS_SHOWN = 200  # sites that need work listed first; the rest are counted
MAX_DEPTH = 9  # deeper sites in the full list are indented as much as this one
LIVE_PARTS = ("counts", "events", "urgent", "districts", "list")


@dataclass(frozen=True, slots=True)
class PageQuery:
    text: str = ""  # part of a name or code; diacritics optional ("tam ky")
    verdict: str | None = None
    district: str | None = None  # a site of the level below the root: its subtree
    page: int = 1

    def link(self, **changes: Any) -> str:
        """This view's URL with ``changes`` (None drops a parameter)."""
        values = {"q": self.text, "district": self.district, "verdict": self.verdict,
                  "page": self.page}
        values.update(changes)
        if values["page"] == 1:
            values["page"] = None  # the first page is the page without one
        kept = {k: v for k, v in values.items() if v is not None and v != ""}
        return "/?" + urlencode(kept) if kept else "/"


def _search_keys(inventory: Inventory) -> Steps[dict[str, str]]:
    """Folded "name code address" per site."""
    keys: dict[str, str] = {}
    sites = list(inventory.sites.values())
    for start in range(0, len(sites), SLICE):
        keys.update((site.id, fold(f"{site.name} {site.id} {site.address}"))
                    for site in sites[start:start + SLICE])
        yield
    return keys


def _districts(inventory: Inventory) -> Steps[dict[str, str | None]]:
    """Each site's district: its ancestor at depth 1 (itself at depth 1; None at the root)."""
    depths = inventory.depths
    sites = inventory.sites
    order = inventory.order  # parents first
    out: dict[str, str | None] = {}
    for start in range(0, len(order), SLICE):
        for site_id in order[start:start + SLICE]:
            depth = depths.get(site_id, 0)
            out[site_id] = None if depth == 0 else site_id if depth == 1 else \
                out.get(sites[site_id].parent or "")
        yield
    return out


SEARCH_KEYS = PerInventory(_search_keys)
DISTRICTS = PerInventory(_districts)


def _state(snap: Snapshot, site_id: str) -> State:
    verdict = snap.verdict(site_id)
    return verdict.state if verdict else State.UNKNOWN


def _row(snap: Snapshot, site_id: str) -> dict[str, Any]:
    inventory = snap.inventory
    site = inventory.sites[site_id]
    view = snap.sites.get(site_id)
    verdict = view.verdict if view else None
    state = verdict.state if verdict else State.UNKNOWN
    quality = verdict.quality if verdict else None
    rtt = quality.rtt if quality else None
    return {
        "id": site.id, "name": site.name, "address": site.address,
        "depth": inventory.depths.get(site_id, 0),
        "level": inventory.level(site.level).name, "state": state.value,
        "label": WORDS_VI[state],
        "since": clock(view.since) if view and view.since else "—",
        "ago": ago(snap.taken_at - view.since) if view and view.since else "",
        "rtt": vn(rtt.avg * 1000 if rtt else None),
        "jitter": vn(quality.jitter * 1000 if quality and quality.jitter is not None
                     else None),
        "loss": f"{vn(quality.loss_ratio * 100)} %" if quality and quality.sent else "—",
        "mos": vn(quality.mos, 2) if quality and quality.mos is not None else "—",
    }


def problem_row(snap: Snapshot, site_id: str) -> dict[str, Any]:
    """A site that needs work: its row, reasons, parent and whom to call."""
    inventory = snap.inventory
    site = inventory.sites[site_id]
    verdict = snap.verdict(site_id)
    parent = inventory.sites.get(site.parent or "")
    contact = site.contact
    return {
        **_row(snap, site_id),
        "parent": parent.name if parent else "—",
        "parent_id": parent.id if parent else None,
        "reasons": "; ".join(r.vi for r in verdict.reasons) if verdict else "",
        "contact_name": (contact.name if contact else None) or "",
        "phone": contact.phone if contact else None,
        "tel": tel(contact.phone if contact else None),
    }


# Sites gone through between two pauses of a page's work on the loop (cooperative.py).
SLICE = 500


def _slices(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), SLICE):
        yield ids[start:start + SLICE]


def _matching(snap: Snapshot, query: PageQuery) -> Steps[list[str]]:
    """Site ids the query keeps, in tree order: filtered before anything is built."""
    listed: Sequence[str] = snap.order
    if query.district:
        districts = yield from DISTRICTS.steps(snap.inventory)
        kept: list[str] = []
        for part in _slices(listed):
            kept += [site_id for site_id in part if districts.get(site_id) == query.district]
            yield
        listed = kept
    if query.text:
        needle = fold(query.text)
        keys = yield from SEARCH_KEYS.steps(snap.inventory)
        kept = []
        for part in _slices(listed):
            kept += [site_id for site_id in part if needle in keys.get(site_id, "")]
            yield
        listed = kept
    if query.verdict:
        kept = []
        for part in _slices(listed):
            kept += [site_id for site_id in part if _state(snap, site_id) == query.verdict]
            yield
        listed = kept
    return list(listed)


def overview_context(snap: Snapshot, query: PageQuery | None = None,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return drain(overview_context_steps(snap, query, extra))


def overview_context_steps(snap: Snapshot, query: PageQuery | None = None,
                           extra: Mapping[str, Any] | None = None) -> Steps[dict[str, Any]]:
    """``extra``: what the request adds (who is looking, the takes held by site)."""
    query = query or PageQuery()
    inventory = snap.inventory
    if query.district and query.district not in inventory.sites:
        query = replace(query, district=None)
    counts = dict.fromkeys(STATES, 0)
    district_of = yield from DISTRICTS.steps(inventory)
    zero = {state.value: 0 for state in STATES}
    # A district's table is made when the district itself comes by: the tree order puts
    # it before its communes (one pass over 12,000 sites, in slices).
    per_district: dict[str, dict[str, int]] = {}
    yield
    for part in _slices(snap.order):
        for site_id in part:
            state = _state(snap, site_id)
            counts[state] += 1
            district = district_of.get(site_id)
            if district is not None:
                table = per_district.get(district)
                if table is None:
                    table = per_district[district] = dict(zero)
                table[state.value] += 1
        yield
    listed = yield from _matching(snap, query)
    needing: list[tuple[int, int, str]] = []
    for start in range(0, len(listed), SLICE):
        needing += [(RANK[state], position, site_id)
                    for position, site_id in enumerate(listed[start:start + SLICE], start)
                    if (state := _state(snap, site_id)) != State.READY]
        yield
    urgent = sorted(needing)
    yield
    problems = [problem_row(snap, site_id) for _, _, site_id in urgent[:PROBLEMS_SHOWN]]
    yield
    pages = max(1, -(-len(listed) // PAGE_SIZE))
    page = min(query.page, pages)
    rows = [_row(snap, site_id) for site_id in listed[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
    yield
    query = replace(query, page=page)
    return {
        "now": clock(snap.taken_at, with_year=True),
        "total": len(inventory),
        "counts": [(state.value, WORDS_VI[state], counts[state]) for state in STATES],
        "districts": [{"id": site_id, "name": inventory.sites[site_id].name,
                       "counts": table} for site_id, table in per_district.items()],
        "problems": problems,
        "problems_total": len(urgent),
        "rows": rows,
        "listed": len(listed),
        "page": page,
        "pages": pages,
        "query": query,
        "link": query.link,
        "filtered": bool(query.text or query.verdict or query.district),
        "states": [(state.value, WORDS_VI[state]) for state in STATES],
        "events": upcoming_events(snap),
        "max_depth": MAX_DEPTH,
        "live_url": query.link(live=1),
        "taken": {},
        **(extra or {}),
    }


def upcoming_events(snap: Snapshot) -> list[dict[str, Any]]:
    """Conferences not over yet: their sites, how many of them cannot join now, and their
    latest test run."""
    events = []
    latest = snap.latest_runs or {}
    for event in sorted(snap.events, key=lambda e: e.start):
        if event.end.timestamp() < snap.taken_at:
            continue
        report = latest.get(event.id)
        run = None
        if report is not None:
            # A latest run is a complete one, whose summary the run wrote.
            summary = report["summary"] or count(site["verdict"] for site in report["sites"])
            run = {"run_id": report["run_id"],
                   "when": datetime.fromisoformat(report["started_at"]).astimezone(ZONE)
                   .strftime("%H:%M %d/%m"),
                   "ready": sum(n for state, n in in_order(summary) if state in CAN_JOIN),
                   "total": summary["total"]}
        not_ready = sum(1 for site_id in event.participants
                        if _state(snap, site_id) not in CAN_JOIN)
        events.append({"id": event.id, "title": event.title,
                       "start": event.start.astimezone(ZONE).strftime("%H:%M %d/%m/%Y"),
                       "participants": len(event.participants), "not_ready": not_ready,
                       "run": run})
    return events


def render_status(snap: Snapshot, query: PageQuery | None = None,
                  extra: Mapping[str, Any] | None = None) -> str:
    return drain(render_status_steps(snap, query, extra))


def render_status_steps(snap: Snapshot, query: PageQuery | None = None,
                        extra: Mapping[str, Any] | None = None) -> Steps[str]:
    context = yield from overview_context_steps(snap, query, extra)
    return (yield from render_page_steps("status.html.j2", context))


def live_status(snap: Snapshot, query: PageQuery | None = None,
                extra: Mapping[str, Any] | None = None) -> Mapping[str, object]:
    return drain(live_status_steps(snap, query, extra))


def live_status_steps(snap: Snapshot, query: PageQuery | None = None,
                      extra: Mapping[str, Any] | None = None) -> Steps[Mapping[str, object]]:
    context = yield from overview_context_steps(snap, query, extra)
    parts = yield from render_parts_steps(LIVE_PARTS, context)
    return {"updated": context["now"], "parts": parts}
