"""The terminal report: a rich table, worst sites first, grouped by parent.

Reads only the report dict. Colour is decided by the caller's Console (the CLI's
``--no-color``, or no terminal); everything colour says is also said in words, so the
plain text and a black-and-white printout lose nothing. Fits 100 columns.
"""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bridgemon import verdicts
from bridgemon.report.common import (
    DASH,
    DIRECTION_VI,
    STATUS_VI,
    TRIGGER_VI,
    by_severity,
    duration_between,
    grouped,
    mtu_checks,
    mtu_outcome,
    num,
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
from bridgemon.testrun_schema import Report, SiteReport

WIDTH = 100
NAME_WIDTH = 22  # the longest commune name of the shipped inventory is 23 characters
VERDICT_WIDTH = 13  # "Chưa sẵn sàng"; "Mất kết nối cấp trên" takes two lines
MIN_REASONS_WIDTH = 20
VERDICT_STYLE: dict[str, str] = {
    verdicts.State.READY: "green",
    verdicts.State.DEGRADED: "yellow",
    verdicts.State.NOT_READY: "bold red",
    verdicts.State.PARENT_DOWN: "magenta",
    verdicts.State.UNKNOWN: "dim",
}


def build(
    report: Report, *, width: int = WIDTH, problems_only: bool = False
) -> RenderableType:
    """Header, the per-parent tables and the footer as one renderable.

    ``width`` is the width to lay the columns out for (the console's). ``problems_only``
    leaves ready sites out (a 12,000-site run lists only the few that need work); the
    footer still counts them.
    """
    return Group(
        _header(report), *_tables(report, width, problems_only),
        *_path_tables(report, width, problems_only), _footer(report, problems_only),
    )


def print_table(
    report: Report, console: Console, *, problems_only: bool = False
) -> None:
    """Print the report on the CLI's console (its width, colour and terminal settings)."""
    console.print(build(report, width=console.width, problems_only=problems_only))


def render_table(
    report: Report, *, width: int = WIDTH, color: bool = False,
    problems_only: bool = False,
) -> str:
    """The report as text (for ``-o FILE`` or the API): no colour codes unless asked."""
    out = io.StringIO()
    console = Console(
        file=out, width=width, force_terminal=color, no_color=not color,
        color_system="standard" if color else None, highlight=False, emoji=False,
        legacy_windows=False,
    )
    print_table(report, console, problems_only=problems_only)
    if color:
        return out.getvalue()
    # rich pads every line to the full width; a file should not carry that.
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


def _header(report: Report) -> Text:
    title = report.get("event_title") or report.get("event")
    text = Text("KIỂM TRA KẾT NỐI ĐIỂM CẦU", style="bold")
    if title:
        text.append(f" — {title}", style="bold")
    if report.get("event") and report.get("event") != title:
        text.append(f" ({report['event']})")
    lines: list[str] = []
    if report.get("event_start"):
        lines.append(f"Hội nghị bắt đầu: {when(report['event_start'], seconds=False)}")
    if report.get("selector"):
        lines.append(f"Phạm vi: {report['selector']}")
    took = duration_between(report.get("started_at"), report.get("finished_at"))
    lines.append(f"Kiểm tra lúc: {when(report.get('started_at'))}"
                 + (f" (trong {num(took, 0)} giây)" if took is not None else ""))
    who = f"Người kiểm tra: {report.get('operator') or DASH}"
    trigger = report.get("trigger")
    if trigger:
        who += f" ({TRIGGER_VI.get(trigger, trigger)})"
    lines.append(who)
    probe = f"Mã lần kiểm tra: {report.get('run_id', DASH)}"
    if report.get("count") is not None:
        spacing = report.get("spacing_ms")
        probe += f" · {report['count']} gói ping mỗi điểm cầu"
        if spacing is not None:
            probe += f", cách nhau {num(spacing, 0)} ms"
    lines.append(probe)
    for line in lines:
        text.append("\n" + line)
    status = report.get("status", "complete")
    if status != "complete":
        text.append(
            f"\nCHÚ Ý: lần kiểm tra {STATUS_VI.get(status, status)} — "
            "chỉ có kết quả các điểm cầu đã kiểm tra xong.",
            style="bold yellow",
        )
    return text


def _tables(report: Report, width: int, problems_only: bool) -> list[Table]:
    """One table per parent, its name as the title, all with the same column widths.

    rich has no cells spanning columns, so a group heading inside one table would be
    squeezed into the first column; separate tables with fixed widths line up instead.
    """
    groups = []
    for parent, parent_name, sites in grouped(report.get("sites") or []):
        shown = [s for s in sites if not problems_only or s.get("verdict") != verdicts.State.READY]
        if shown:
            groups.append((parent, parent_name, [_row(site) for site in shown]))
    rows = [row for _, _, group in groups for row in group]
    # Figures columns as wide as their widest value; the site name over its id and address
    # (two lines) so names stay whole; the reasons take what is left.
    fixed = {
        "name": NAME_WIDTH,
        "verdict": VERDICT_WIDTH,
        "rtt": max([10, *(len(str(row[2])) for row in rows)]),
        "jitter": max([6, *(len(str(row[3])) for row in rows)]),
        "loss": max([4, *(len(str(row[4])) for row in rows)]),
        "mos": 4,
    }
    gaps = 2 * len(fixed)  # a divider and a one-space left padding before each column
    reasons_width = max(MIN_REASONS_WIDTH, width - sum(fixed.values()) - gaps)
    def table(title: str | None) -> Table:
        new = Table(
            title=Text(f"▸ {title}", style="bold") if title else None, title_justify="left",
            box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1), show_edge=False,
            show_header=title is None,
        )
        new.add_column("Điểm cầu", width=fixed["name"], overflow="fold")
        new.add_column("Kết quả", width=fixed["verdict"], overflow="fold")
        new.add_column("RTT tb/p95\nms", width=fixed["rtt"], justify="right", no_wrap=True)
        new.add_column("Jitter\nms", width=fixed["jitter"], justify="right", no_wrap=True)
        new.add_column("Mất\ngói", width=fixed["loss"], justify="right", no_wrap=True)
        new.add_column("MOS", width=fixed["mos"], justify="right", no_wrap=True)
        new.add_column("Nguyên nhân / lỗi dịch vụ", width=reasons_width, overflow="fold")
        return new

    tables = [table(None)]  # the column headings, once, above the first group
    for parent, parent_name, group in groups:
        if parent is None:
            heading = "Cấp cao nhất"
        else:
            heading = parent_name if parent_name == parent else f"{parent_name} ({parent})"
        tables.append(table(heading))
        for row in group:
            tables[-1].add_row(*row)
    return tables


def _row(site: SiteReport) -> list[Any]:
    verdict = str(site.get("verdict", verdicts.State.UNKNOWN))
    fig = path_figures(site)
    rtt = DASH if fig["rtt_avg"] is None else f"{num(fig['rtt_avg'])}/{num(fig['rtt_p95'])}"
    reasons = problems(site)
    where = " · ".join(str(part) for part in (site.get("id"), site.get("address")) if part)
    name = Text(f"{site.get('name', '')}")
    name.append(f"\n{where}", style="dim")
    return [
        name,
        Text(verdicts.words_vi(verdict), style=VERDICT_STYLE.get(verdict, "")),
        rtt,
        num(fig["jitter"]),
        pct(fig["loss_ratio"]),
        num(site.get("mos"), 2),
        Text("; ".join(reasons)),
    ]


def _path_tables(report: Report, width: int, problems_only: bool) -> list[Table]:
    """STAMP trains (one row per train, a line per direction) and path MTU checks, for the
    sites that have them, worst first; none when no site has any."""
    sites = [site for site in by_severity(report.get("sites") or [])
             if not problems_only or site.get("verdict") != verdicts.State.READY]
    trains = [(site, check) for site in sites for check in train_checks(site)]
    mtus = [(site, check) for site in sites for check in mtu_checks(site)]
    tables: list[Table] = []
    if trains:
        fixed = (NAME_WIDTH, 7, 6, 6, 5, 11, 13, 4)
        table = Table(
            title=Text("▸ Kiểm tra đường truyền bằng luồng STAMP", style="bold"),
            title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1),
            show_edge=False,
        )
        table.add_column("Điểm cầu / luồng\nkết quả", width=fixed[0], overflow="fold")
        table.add_column("Chiều", width=fixed[1], no_wrap=True)
        table.add_column("Mất\ngói", width=fixed[2], justify="right", no_wrap=True)
        table.add_column("Jitter\nms", width=fixed[3], justify="right", no_wrap=True)
        table.add_column("Đảo/\ntrùng", width=fixed[4], justify="right", no_wrap=True)
        table.add_column("Tốc độ\nđi qua", width=fixed[5], justify="right", no_wrap=True)
        table.add_column("Trễ khứ hồi\nms min/tb\np95/max", width=fixed[6], justify="right",
                         no_wrap=True)
        table.add_column("MOS", width=fixed[7], justify="right", no_wrap=True)
        for site, check in trains:
            table.add_row(*_train_row(site, check))
        tables.append(table)
    if mtus:
        table = Table(
            title=Text("▸ Kiểm tra MTU đường truyền (gói lớn, cờ DF)", style="bold"),
            title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1),
            show_edge=False,
        )
        table.add_column("Điểm cầu", width=NAME_WIDTH, overflow="fold")
        table.add_column("Gói thử", width=8, justify="right", no_wrap=True)
        table.add_column("MTU", width=6, justify="right", no_wrap=True)
        table.add_column("Kết quả", width=max(MIN_REASONS_WIDTH, width - NAME_WIDTH - 14 - 8),
                         overflow="fold")
        for site, check in mtus:
            packet = check.get("packet_size")
            table.add_row(
                _name(site, str(check.get("name") or "mtu")),
                DASH if packet is None else f"{packet} B",
                DASH if check.get("mtu") is None else str(check.get("mtu")),
                Text(mtu_outcome(check), style="" if check.get("ok") else "bold red"),
            )
        tables.append(table)
    return tables


def _name(site: SiteReport, check: str) -> Text:
    name = Text(f"{site.get('name', '')}")
    name.append(f"\n{site.get('id', '')} · {check}", style="dim")
    return name


def _train_row(site: SiteReport, check: Any) -> list[Any]:
    """One train: the site, what was sent and the train's own verdict (its reasons are in
    the site's row above), a line per direction, the round-trip delay on two lines."""
    directions = train_directions(check)
    delay = train_delay(check)
    state = str(check.get("state") or verdicts.State.UNKNOWN)
    lines = (f"{num(delay.get('min'))}/{num(delay.get('avg'))}\n"
             f"{num(delay.get('p95'))}/{num(delay.get('max'))}") if delay else DASH
    name = Text(f"{site.get('name', '')}")
    name.append(f"\n{site.get('id', '')} · {train_title(check)}", style="dim")
    name.append(f"\n{verdicts.words_vi(state)}", style=VERDICT_STYLE.get(state, ""))
    return [
        name,
        "\n".join(DIRECTION_VI.get(name, name) for name, _ in directions) or DASH,
        "\n".join(pct(stats.get("loss_ratio")) for _, stats in directions) or DASH,
        "\n".join(num(stats.get("jitter_ms")) for _, stats in directions) or DASH,
        "\n".join(f"{stats.get('reordered', 0)}/{stats.get('duplicates', 0)}"
                  for _, stats in directions) or DASH,
        "\n".join(rate(stats.get("carried_bps")) for _, stats in directions) or DASH,
        lines,
        num(check.get("mos"), 2),
    ]


def _footer(report: Report, problems_only: bool) -> Text:
    counts = summary_of(report)
    text = Text(f"Tổng số {num(counts['total'], 0)} điểm cầu\n", style="bold")
    for index, (verdict, count) in enumerate(verdicts.in_order(counts)):
        if index:
            text.append(" · ")
        text.append(f"{verdicts.WORDS_VI[verdict]} {num(count, 0)}",
                    style=VERDICT_STYLE[verdict] if count else "dim")
    if problems_only and counts["ready"]:
        text.append(f"\n({num(counts['ready'], 0)} điểm cầu sẵn sàng không liệt kê)", style="dim")
    return text
