"""The status page at ``/``: what a technician sees in a browser, in Vietnamese.

Renders a Snapshot only (no live state), like /metrics, and a bounded number of rows
(the sites that need work first, then one page of the full list), so it stays fast at any
inventory size. Thread-safe: the web app renders it off the event loop (counting and
sorting 12,000 verdicts and a template of 300 rows take tens of milliseconds).
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2

from bridgemon import __version__
from bridgemon.events import ZONE
from bridgemon.inventory import Inventory
from bridgemon.snapshot import Snapshot
from bridgemon.verdicts import CAN_JOIN, RANK, WORDS_VI, State, count, in_order

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bridgemon.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _vn(number: float | None, digits: int = 1) -> str:
    """Vietnamese decimal comma: 12,5."""
    return "—" if number is None else f"{number:.{digits}f}".replace(".", ",")


PAGE_SIZE = 100  # rows of the full list per page
PROBLEMS_SHOWN = 200  # sites that need work listed first; the rest are counted
MAX_DEPTH = 9  # deeper sites in the full list are indented as much as this one


@dataclass(frozen=True, slots=True)
class PageQuery:
    text: str = ""  # part of a name or code; diacritics optional ("hai chau")
    verdict: str | None = None
    page: int = 1


def _fold(text: str) -> str:
    """Lower case without diacritics, so "hai chau" finds "Phường Hải Châu"."""
    decomposed = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_SEARCH_KEYS: dict[int, tuple[Inventory, dict[str, str]]] = {}
_SEARCH_KEYS_LOCK = threading.Lock()  # pages render in worker threads


def _search_keys(inventory: Inventory) -> dict[str, str]:
    """Folded "name code address" per site, built once per inventory."""
    with _SEARCH_KEYS_LOCK:
        cached = _SEARCH_KEYS.get(id(inventory))
        if cached is None or cached[0] is not inventory:
            keys = {site.id: _fold(f"{site.name} {site.id} {site.address}")
                    for site in inventory.sites.values()}
            _SEARCH_KEYS.clear()
            cached = _SEARCH_KEYS[id(inventory)] = (inventory, keys)
        return cached[1]


def _row(snap: Snapshot, site_id: str) -> dict[str, Any]:
    inventory = snap.inventory
    site = inventory.sites[site_id]
    verdict = snap.verdict(site_id)
    state = verdict.state if verdict else State.UNKNOWN
    quality = verdict.quality if verdict else None
    rtt = quality.rtt if quality else None
    return {
        "id": site.id, "name": site.name, "address": site.address,
        "depth": inventory.depths.get(site_id, 0),
        "level": inventory.level(site.level).name, "state": state.value,
        "label": WORDS_VI[state],
        "rtt": _vn(rtt.avg * 1000 if rtt else None),
        "jitter": _vn(quality.jitter * 1000 if quality and quality.jitter is not None
                      else None),
        "loss": f"{_vn(quality.loss_ratio * 100)} %" if quality and quality.sent else "—",
        "mos": _vn(quality.mos, 2) if quality and quality.mos is not None else "—",
    }


def render_status(snap: Snapshot, query: PageQuery | None = None) -> str:
    query = query or PageQuery()
    inventory = snap.inventory
    counts = {state: 0 for state in State}
    urgent: list[tuple[int, int, str]] = []
    for position, site_id in enumerate(snap.order):
        verdict = snap.verdict(site_id)
        state = verdict.state if verdict else State.UNKNOWN
        counts[state] += 1
        if state != State.READY:  # needs work: listed first, worst first
            urgent.append((RANK[state], position, site_id))
    urgent.sort()
    problems = []
    for _, _, site_id in urgent[:PROBLEMS_SHOWN]:
        site = inventory.sites[site_id]
        verdict = snap.verdict(site_id)
        parent = inventory.sites.get(site.parent or "")
        contact = site.contact
        problems.append({
            **_row(snap, site_id),
            "parent": parent.name if parent else "—",
            "reasons": "; ".join(r.vi for r in verdict.reasons) if verdict else "",
            "contact": " · ".join(x for x in ((contact.name, contact.phone) if contact
                                              else ()) if x) or "—",
        })
    listed: list[str] | tuple[str, ...] = snap.order
    if query.text:
        needle = _fold(query.text)
        keys = _search_keys(inventory)
        listed = [site_id for site_id in listed if needle in keys.get(site_id, "")]
    if query.verdict:
        listed = [site_id for site_id in listed
                  if (v := snap.verdict(site_id)) is not None and v.state.value == query.verdict]
    pages = max(1, -(-len(listed) // PAGE_SIZE))
    page = min(query.page, pages)
    rows = [_row(snap, site_id)
            for site_id in listed[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]]
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
                   "when": datetime.fromisoformat(report["started_at"]).strftime("%H:%M %d/%m"),
                   "ready": sum(n for state, n in in_order(summary) if state in CAN_JOIN),
                   "total": summary["total"]}
        events.append({"title": event.title,
                       "start": event.start.astimezone(ZONE).strftime("%H:%M %d/%m/%Y"),
                       "participants": len(event.participants), "run": run})
    return _ENV.get_template("status.html.j2").render(
        now=datetime.fromtimestamp(snap.taken_at, ZONE).strftime("%H:%M:%S %d/%m/%Y"),
        total=len(inventory),
        counts=[(state.value, WORDS_VI[state], counts[state]) for state in State],
        problems=problems,
        problems_total=len(urgent),
        rows=rows,
        listed=len(listed),
        page=page,
        pages=pages,
        query=query,
        filtered=bool(query.text or query.verdict),
        states=[(state.value, WORDS_VI[state]) for state in State],
        events=events,
        version=__version__,
        max_depth=MAX_DEPTH,
    )
