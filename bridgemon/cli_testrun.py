"""``bridgemon test``, ``bridgemon history`` and ``bridgemon report``.

Progress goes to stderr (a live bar on a terminal, plain lines otherwise) so stdout
carries only the report and can be piped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from bridgemon import exits, gil
from bridgemon.config import Config, ConfigError, load_config, parse_config
from bridgemon.inventory import SelectorError
from bridgemon.testrun.history import History, file_in
from bridgemon.testrun_schema import Report, SiteReport
from bridgemon.verdicts import CAN_JOIN, WORDS_VI, State, in_order


def open_history(state_dir: Path) -> History:
    """The store, with runs of processes that died (SIGKILL, power cut) marked incomplete."""
    history = History(file_in(state_dir))
    for run_id in history.mark_incomplete():
        print(f"test run {run_id} was interrupted; marked incomplete", file=sys.stderr)
    return history


def stored_runs_dir(path: Path) -> Path:
    """The state directory ``history`` and ``report`` read, from the config at ``path``.

    They only re-read stored runs, so an inventory that does not load (a typo being fixed,
    a file moved) must not lock the technician out of last week's reports: the state
    directory is then taken from the file's ``[monitor] state_dir`` alone, or the default,
    and a warning says which.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        state_dir, source = fallback_state_dir(path)
        count = len(exc.issues)
        first = exc.issues[0] if exc.issues else exc
        print(f"warning: {path} is not loaded ({count} error{'s' if count != 1 else ''}, "
              f"`bridgemon check-config` lists them; the first: {first})\n"
              f"warning: stored runs are read from {file_in(state_dir).absolute()} "
              f"({source})", file=sys.stderr)
        return state_dir
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config.monitor.state_dir


# A document holding nothing but one site: valid whatever the rest of the file says.
_BARE_INVENTORY = (
    '[[sites]]\nid = "0"\nname = "-"\nlevel = "province"\naddress = "127.0.0.1"\n'
)


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string."""
    escaped = "".join(
        f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F
        else "\\" + char if char in '"\\' else char
        for char in value
    )
    return f'"{escaped}"'


def fallback_state_dir(path: Path) -> tuple[Path, str]:
    """(state directory, where it came from) for a config file that does not load.

    Only ``[monitor] state_dir`` is read from the file. It is resolved by the loader itself,
    from a document holding that setting alone, so a relative path, ``$STATE_DIRECTORY``
    and the default mean exactly what they mean for a valid config: ``test`` and ``report``
    never disagree about where the history lives.
    """
    value: object = None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        monitor = raw.get("monitor")
        if isinstance(monitor, dict):
            value = monitor.get("state_dir")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        pass  # tomllib.TOMLDecodeError is a ValueError
    if isinstance(value, str):
        try:
            document = f"[monitor]\nstate_dir = {_toml_string(value)}\n{_BARE_INVENTORY}"
            state_dir = parse_config(document, path).monitor.state_dir
            return state_dir, "the [monitor] state_dir of that file"
        except ConfigError:
            pass  # the setting itself is bad: the default, as for a file without it
    return parse_config(_BARE_INVENTORY, path).monitor.state_dir, "the default state directory"


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8", newline="")
        print(f"report written to {output}", file=sys.stderr)
    else:
        text = text.removeprefix("\ufeff")  # the BOM is for Excel opening a file, not a pipe
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_test(args: argparse.Namespace, config: Config) -> int:
    from bridgemon.probes import ProbeContext
    from bridgemon.probes.pinger import PingerUnavailable
    from bridgemon.report import render
    from bridgemon.testrun.plan import default_operator, plan_with
    from bridgemon.testrun.run import all_ready, run_and_store

    event = None
    if args.event:
        event = next((e for e in config.events if e.id == args.event), None)
        if event is None:
            known = ", ".join(e.id for e in config.events) or "none configured"
            print(f"bridgemon: unknown event {args.event!r} (events: {known})", file=sys.stderr)
            return exits.USAGE
    if args.count is not None and not 1 <= args.count <= 1000:
        print("bridgemon: --count must be between 1 and 1000", file=sys.stderr)
        return exits.USAGE
    try:
        plan = plan_with(config.test, config.inventory, selector=args.select, event=event,
                         count=args.count, trigger="cli", operator=default_operator())
    except SelectorError as exc:
        print(f"bridgemon: --select: {exc}", file=sys.stderr)
        return exits.USAGE
    history = None if args.no_history else open_history(config.monitor.state_dir)
    progress = _Progress(len(plan.sites))

    async def main() -> Report:
        gil.share_promptly()  # the history's writer thread must not hold up the pings
        ctx = ProbeContext.from_settings(config.monitor)
        try:
            ctx.pinger.check()
            return await run_and_store(plan, config.inventory, ctx, history,
                                       on_site=progress.site)
        finally:
            ctx.pinger.close()

    try:
        with progress:
            report = asyncio.run(main())
    except PingerUnavailable as exc:
        print(f"bridgemon: {exc}", file=sys.stderr)
        return exits.USAGE
    except KeyboardInterrupt:  # run_and_store has marked the run incomplete
        print("bridgemon: interrupted; the run is kept as incomplete", file=sys.stderr)
        return exits.INTERRUPTED
    if history is not None:
        # The state directory follows the config file, not the shell's directory: say
        # where the run went and how to see it again.
        print(f"test run {plan.run_id} stored in {history.path.absolute()}; "
              f"again: bridgemon report {plan.run_id}", file=sys.stderr)
    _write(render(report, args.format), args.output)
    return exits.OK if all_ready(report, strict=args.strict) else exits.FAIL


def cmd_history(args: argparse.Namespace, state_dir: Path) -> int:
    path = file_in(state_dir)
    if not path.exists():
        print(f"no test runs stored yet ({path.absolute()})", file=sys.stderr)
        return exits.OK
    runs = open_history(state_dir).list(limit=args.limit, event=args.event)
    if args.format == "json":
        print(json.dumps(runs, ensure_ascii=False, indent=2))
        return exits.OK
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bridgemon.report.common import STATUS_VI, when

    table = Table(title="Lịch sử kiểm tra", box=box.SIMPLE_HEAD)
    # `bridgemon report` takes the id: it is never cut, whatever the terminal's width.
    table.add_column("run", no_wrap=True, min_width=max([3, *(len(r["run_id"]) for r in runs)]))
    # Then what tells the runs apart at a glance; the free text last, folded if it must.
    table.add_column("bắt đầu", overflow="fold")
    table.add_column("trạng thái", overflow="fold")
    table.add_column("sẵn sàng", justify="right", overflow="fold")
    table.add_column("chưa", justify="right", overflow="fold")
    for column in ("sự kiện", "chọn", "người chạy"):
        table.add_column(column, overflow="fold")
    for run in runs:
        summary = run.get("summary")
        counts = in_order(summary) if summary else ()
        can_join = sum(count for state, count in counts if state in CAN_JOIN)
        not_ok = sum(count for state, count in counts if state not in CAN_JOIN)
        # Every cell is data (an event id, a selector, a user name): Text, never markup.
        table.add_row(*(Text(str(cell)) for cell in (
            run["run_id"], when(run["started_at"], seconds=False),
            STATUS_VI.get(run["status"], run["status"]),
            f"{can_join}/{summary['total'] if summary else 0}",
            not_ok, run.get("event") or "", run.get("selector") or "",
            run.get("operator") or "",
        )))
    console = Console(highlight=False)
    console.print(table)
    console.print(Text(f"Lưu tại (stored in): {path.absolute()}"), soft_wrap=True)
    return exits.OK


def cmd_report(args: argparse.Namespace, state_dir: Path) -> int:
    from bridgemon.report import render

    path = file_in(state_dir)
    if not path.exists():
        print(f"bridgemon: no test run {args.run_id!r}: no test runs stored in "
              f"{path.absolute()}", file=sys.stderr)
        return exits.USAGE
    with open_history(state_dir) as history:
        report = history.get(args.run_id)
        if report is None:
            # As git takes a commit: any unique beginning of the id will do.
            matches = history.ids_starting_with(args.run_id, limit=6)
            if len(matches) > 1:
                shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
                print(f"bridgemon: run id {args.run_id!r} is ambiguous: {shown}",
                      file=sys.stderr)
                return exits.USAGE
            report = history.get(matches[0]) if matches else None
    if report is None:
        print(f"bridgemon: no test run {args.run_id!r} in {path.absolute()}", file=sys.stderr)
        return exits.USAGE
    _write(render(report, args.format), args.output)
    return exits.OK


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

    def site(self, site: SiteReport) -> None:
        self.done += 1
        state = State(site["verdict"])
        self.counts[state] += 1
        ready = sum(self.counts[state] for state in CAN_JOIN)
        not_ready = self.done - ready
        if self._bar is not None:
            self._bar.update(self._task, advance=1,
                             counts=f"[green]{ready} sẵn sàng[/] [red]{not_ready} chưa[/]")
        else:
            reason = f" — {site['reasons'][0]}" if site["reasons"] else ""
            print(f"[{self.done}/{self.total}] {site['name']} ({site['id']}): "
                  f"{WORDS_VI[state]}{reason}", file=sys.stderr, flush=True)
