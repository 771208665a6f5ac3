"""The printable report: one HTML page in Vietnamese, the record a department files.

A4 landscape (ten columns do not fit portrait at a readable size), the table header
repeated on every printed page, no row split across pages, signature blocks at the end.
Self-contained: inline CSS, no fonts, scripts or images from anywhere, so it prints the
same offline and years later. Rendered with Jinja2 with autoescaping on: every string
from the report (site names, reasons from the far end's replies) is escaped.

Reads only the report dict; the only outside input is the optional ``organization``
(the department's name for the document heading), which the caller takes from its config.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from bridgemon import verdicts
from bridgemon.report.common import (
    DASH,
    DIRECTION_VI,
    STATUS_VI,
    TRIGGER_VI,
    by_severity,
    date_words,
    mtu_checks,
    mtu_outcome,
    num,
    parse_time,
    path_figures,
    pct,
    problems,
    rate,
    summary_of,
    train_checks,
    train_delay,
    train_directions,
    train_title,
    when,
)
from bridgemon.testrun_schema import Contact, Report, SiteReport

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # always, whatever the file name: names and reasons are data
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the tests, not the page
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(report: Report, *, organization: str | None = None) -> str:
    """The report as a complete HTML document (UTF-8 text)."""
    return _environment().get_template(TEMPLATE).render(**context(report, organization))


def context(report: Report, organization: str | None = None) -> dict[str, Any]:
    """What the template shows, every value already formatted as text."""
    counts = summary_of(report)
    status = str(report.get("status") or "complete")
    trigger = report.get("trigger")
    title = report.get("event_title") or report.get("event")
    return {
        "organization": organization,
        "run_id": report.get("run_id") or DASH,
        # Inside the <style> element HTML escaping means nothing: keep only safe characters.
        "run_id_css": re.sub(r"[^0-9A-Za-z_.:-]", "", str(report.get("run_id") or "")),
        "title": title,
        "event": report.get("event"),
        "event_start": when(report["event_start"], seconds=False)
        if report.get("event_start") else None,
        "selector": report.get("selector"),
        "tested": _span(report.get("started_at"), report.get("finished_at")),
        "operator": report.get("operator") or DASH,
        "trigger": TRIGGER_VI.get(trigger, trigger) if trigger else None,
        "method": _method(report),
        "status": status,
        "status_vi": STATUS_VI.get(status, status),
        "total": num(counts["total"], 0),
        "counts": [
            {"verdict": v.value, "label": verdicts.WORDS_VI[v], "count": num(count, 0)}
            for v, count in verdicts.in_order(counts)
        ],
        "rows": [_row(index, site) for index, site in
                 enumerate(by_severity(report.get("sites") or []), start=1)],
        "date_line": date_words(report.get("started_at")),
        **_path_rows(by_severity(report.get("sites") or [])),
    }


def _row(index: int, site: SiteReport) -> dict[str, Any]:
    fig = path_figures(site)
    contact: Contact | dict[str, None] = site.get("contact") or {}
    verdict = str(site.get("verdict", verdicts.State.UNKNOWN))
    rtt = DASH if fig["rtt_avg"] is None else f"{num(fig['rtt_avg'])} / {num(fig['rtt_p95'])}"
    return {
        "no": index,
        "id": site.get("id") or "",
        "name": site.get("name") or "",
        "address": site.get("address"),
        "parent": site.get("parent_name") or site.get("parent") or DASH,
        "verdict": verdict,
        "verdict_vi": verdicts.words_vi(verdict),
        "rtt": rtt,
        "jitter": num(fig["jitter"]),
        "loss": pct(fig["loss_ratio"]),
        "mos": num(site.get("mos"), 2),
        "problems": problems(site),
        "contact_name": contact.get("name"),
        "contact_phone": contact.get("phone"),
        "contact_email": contact.get("email"),
    }


def _path_rows(sites: list[SiteReport]) -> dict[str, list[dict[str, Any]]]:
    """The STAMP trains (a line per direction in each cell) and the path MTU checks."""
    trains: list[dict[str, Any]] = []
    mtus: list[dict[str, Any]] = []
    for site in sites:
        for check in train_checks(site):
            directions = train_directions(check)
            delay = train_delay(check)
            state = str(check.get("state") or verdicts.State.UNKNOWN)
            trains.append({
                "id": site.get("id") or "",
                "name": site.get("name") or "",
                "train": train_title(check),
                "state": state,
                "state_vi": verdicts.words_vi(state),
                "directions": [{
                    "direction": DIRECTION_VI.get(name, name),
                    "loss": pct(stats.get("loss_ratio")),
                    "jitter": num(stats.get("jitter_ms")),
                    "reordered": f"{stats.get('reordered', 0)} / {stats.get('duplicates', 0)}",
                    "carried": rate(stats.get("carried_bps")),
                } for name, stats in directions],
                "delay": DASH if delay is None else " / ".join(
                    num(value) for value in (delay["min"], delay["avg"], delay["p95"],
                                             delay["max"])),
                "mos": num(check.get("mos"), 2),
            })
        for check in mtu_checks(site):
            packet = check.get("packet_size")
            mtus.append({
                "id": site.get("id") or "",
                "name": site.get("name") or "",
                "check": check.get("name") or "mtu",
                "ok": bool(check.get("ok")),
                "packet": DASH if packet is None else f"{packet} B",
                "mtu": DASH if check.get("mtu") is None else str(check.get("mtu")),
                "outcome": mtu_outcome(check),
            })
    return {"trains": trains, "mtus": mtus}


def _span(started: str | None, finished: str | None) -> str:
    """ "17:15:00 – 17:15:42 ngày 27/11/2026", or both in full across midnight."""
    start, end = parse_time(started), parse_time(finished)
    if start is None:
        return DASH
    if end is None:
        return f"từ {when(started)}"
    if start.date() == end.date() and start.utcoffset() == end.utcoffset():
        day = when(started).split(" ", 1)[1]
        return f"{start:%H:%M:%S} – {end:%H:%M:%S} ngày {day}"
    return f"{when(started)} – {when(finished)}"


def _method(report: Report) -> str | None:
    count, spacing = report.get("count"), report.get("spacing_ms")
    if count is None:
        return None
    text = f"{num(count, 0)} gói ping mỗi điểm cầu"
    if spacing is not None:
        text += f", cách nhau {num(spacing, 0)} ms"
    return text + "; kiểm tra các dịch vụ đã khai báo của điểm cầu"
