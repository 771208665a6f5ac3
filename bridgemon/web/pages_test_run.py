"""The test-run page at ``/test-runs/{id}``: the report of a run inside the pages' layout
(stacked rows on a phone), with a link to the printable report (report/html.py, an A4
document to sign) it shares its wording with: the same ``report.html.context``.

A running run's page updates in place like the others (its live parts), so an operator who
started it watches the sites come in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bridgemon.cooperative import Steps
from bridgemon.report.html import context as report_context
from bridgemon.testrun_schema import Report
from bridgemon.web.pages_common import clock, render_page_steps, render_parts_steps, tel

LIVE_PARTS = ("run_summary", "run_sites")
ROWS_SHOWN = 300  # sites listed, worst first (the printable report has them all)


def test_run_context(report: Report, now: float) -> dict[str, Any]:
    shown = report_context(report)
    rows = shown["rows"]
    shown["rows"] = rows[:ROWS_SHOWN]
    for row in shown["rows"]:
        row["tel"] = tel(row["contact_phone"])
    run_id = str(report["run_id"])
    event = report.get("event")
    return {
        **shown,
        "now": clock(now, with_year=True),
        "run_id": run_id,
        "hidden": len(rows) - len(shown["rows"]),
        "printable": f"/api/v1/test-runs/{quote(run_id, safe='')}?format=html",
        "event_link": f"/events/{quote(event, safe='')}" if event else None,
        "live_url": f"/test-runs/{quote(run_id, safe='')}?live=1"
        if report.get("status") == "running" else "",
    }


def render_test_run_steps(context: Mapping[str, Any]) -> Steps[str]:
    return render_page_steps("test_run.html.j2", context)


def live_test_run_steps(context: Mapping[str, Any]) -> Steps[Mapping[str, object]]:
    parts = yield from render_parts_steps(LIVE_PARTS, context)
    return {"updated": context["now"], "parts": parts}
