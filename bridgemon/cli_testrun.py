"""``bridgemon test``, ``bridgemon history`` and ``bridgemon report``.

Progress goes to stderr (a live bar on a terminal, plain lines otherwise) so stdout
carries only the report and can be piped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bridgemon.config import Config
from bridgemon.history import History
from bridgemon.inventory import SelectorError
from bridgemon.readiness import STATE_VI, State

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def history_path(config: Config) -> Path:
    return config.monitor.state_dir / "bridgemon.db"


def open_history(config: Config) -> History:
    """The store, with runs of processes that died (SIGKILL, power cut) marked incomplete."""
    history = History(history_path(config))
    for run_id in history.mark_incomplete():
        print(f"test run {run_id} was interrupted; marked incomplete", file=sys.stderr)
    return history


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8", newline="")
        print(f"report written to {output}", file=sys.stderr)
    else:
        text = text.removeprefix("\ufeff")  # the BOM is for Excel opening a file, not a pipe
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_test(args: argparse.Namespace, config: Config) -> int:
    from bridgemon.probes import ProbeContext
    from bridgemon.probes.pinger import Pinger, PingerUnavailable
    from bridgemon.report import render
    from bridgemon.testrun import all_ready, default_operator, plan_test, run_test

    event = None
    if args.event:
        event = next((e for e in config.events if e.id == args.event), None)
        if event is None:
            known = ", ".join(e.id for e in config.events) or "none configured"
            print(f"bridgemon: unknown event {args.event!r} (events: {known})", file=sys.stderr)
            return EXIT_USAGE
    if args.count is not None and not 1 <= args.count <= 1000:
        print("bridgemon: --count must be between 1 and 1000", file=sys.stderr)
        return EXIT_USAGE
    settings = config.test
    try:
        plan = plan_test(
            config.inventory, selector=args.select, event=event,
            count=args.count or settings.count, spacing=settings.spacing,
            timeout=settings.timeout, concurrency=settings.concurrency, trigger="cli",
            operator=default_operator(),
        )
    except SelectorError as exc:
        print(f"bridgemon: --select: {exc}", file=sys.stderr)
        return EXIT_USAGE
    history = None if args.no_history else open_history(config)
    progress = _Progress(len(plan.sites))

    def on_start(header: dict[str, Any]) -> None:
        if history is not None:
            history.begin(header)

    def on_site(site: dict[str, Any]) -> None:
        if history is not None:
            history.add_site(plan.run_id, site)
        progress.site(site)

    async def main() -> dict[str, Any]:
        pinger = Pinger(config.monitor.icmp_mode)
        try:
            pinger.check()
            ctx = ProbeContext(pinger=pinger, resolve_timeout=config.monitor.resolve_timeout,
                               sockets=asyncio.Semaphore(config.monitor.check_sockets))
            return await run_test(plan, config.inventory, ctx, on_start=on_start,
                                  on_site=on_site)
        finally:
            pinger.close()

    try:
        with progress:
            report = asyncio.run(main())
    except PingerUnavailable as exc:
        print(f"bridgemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if history is not None:
            history.abort(plan.run_id)
        print("bridgemon: interrupted; the run is kept as incomplete", file=sys.stderr)
        return 130
    if history is not None:
        history.finish(plan.run_id, report["finished_at"], report["summary"])
    _write(render(report, args.format), args.output)
    return EXIT_OK if all_ready(report, strict=args.strict) else EXIT_FAIL


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    path = history_path(config)
    if not path.exists():
        print(f"no test runs stored yet ({path})", file=sys.stderr)
        return EXIT_OK
    runs = open_history(config).list(limit=args.limit, event=args.event)
    if args.format == "json":
        print(json.dumps(runs, ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Lịch sử kiểm tra — {path}")
    for column in ("run", "bắt đầu", "sự kiện", "chọn", "người chạy", "trạng thái", "sẵn sàng",
                   "chưa sẵn sàng"):
        table.add_column(column)
    for run in runs:
        summary = run.get("summary") or {}
        not_ok = sum(summary.get(k, 0) for k in ("not_ready", "parent_down", "unknown"))
        table.add_row(
            run["run_id"], run["started_at"], run.get("event") or "",
            run.get("selector") or "", run.get("operator") or "", run["status"],
            f"{summary.get('ready', 0) + summary.get('degraded', 0)}/{summary.get('total', 0)}",
            str(not_ok),
        )
    Console().print(table)
    return EXIT_OK


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    from bridgemon.report import render

    path = history_path(config)
    report = open_history(config).get(args.run_id) if path.exists() else None
    if report is None:
        print(f"bridgemon: no test run {args.run_id!r} in {path}", file=sys.stderr)
        return EXIT_USAGE
    _write(render(report, args.format), args.output)
    return EXIT_OK


class _Progress:
    """A live bar with running counts on a terminal; one line per site otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.counts = {state: 0 for state in State}
        self.live = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            # Sites are probed side by side, so they finish in waves: the spinner and the
            # clock show the run is alive between them.
            self._bar = Progress(
                SpinnerColumn(), TextColumn("[bold]Kiểm tra điểm cầu"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[counts]}"),
                console=Console(stderr=True), transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("test", total=self.total, counts="")
        else:
            print(f"testing {self.total} sites", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def site(self, site: dict[str, Any]) -> None:
        self.done += 1
        state = State(site["verdict"])
        self.counts[state] += 1
        ready = self.counts[State.READY] + self.counts[State.DEGRADED]
        not_ready = self.done - ready
        if self._bar is not None:
            self._bar.update(self._task, advance=1,
                             counts=f"[green]{ready} sẵn sàng[/] [red]{not_ready} chưa[/]")
        else:
            reason = f" — {site['reasons'][0]}" if site["reasons"] else ""
            print(f"[{self.done}/{self.total}] {site['name']} ({site['id']}): "
                  f"{STATE_VI[state]}{reason}", file=sys.stderr, flush=True)
