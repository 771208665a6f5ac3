"""Test-run reports: the report dict (docs/testrun.schema.json) as text for people.

Formats: ``table`` (terminal, rich), ``json`` (the contract itself, described by
docs/testrun.schema.json), ``csv`` (one row per site, for Excel) and ``html`` (a
printable page in Vietnamese). Every format reads only the report dict, never live
objects, the inventory or the clock, so a run stored in the history re-renders exactly as
it did on the day. Nothing here does I/O: callers write the returned text.
"""

from __future__ import annotations

import json

from bridgemon.report.csvout import render_csv
from bridgemon.report.html import render_html
from bridgemon.report.table import print_table, render_table
from bridgemon.testrun_schema import Report

# What an HTTP response or a file of each format is: bridgemon.media_types.REPORTS.
FORMATS: tuple[str, ...] = ("table", "json", "csv", "html")


def render_json(report: Report) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def render(report: Report, fmt: str) -> str:
    """The report in format ``fmt`` (one of FORMATS); ValueError for any other."""
    if fmt == "table":
        return render_table(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r} (expected one of {', '.join(FORMATS)})")


__all__ = [
    "FORMATS",
    "print_table",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
]
