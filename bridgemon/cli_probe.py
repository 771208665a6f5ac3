"""``bridgemon probe URL``: what a technician types while on the phone with a site.

No inventory needed: the URL says what to check. The JSON has the fields of a check in a
test-run report.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Mapping

from bridgemon import exits
from bridgemon.cli_probe_url import parse_probe_url
from bridgemon.config import MonitorModel
from bridgemon.probes import ProbeContext
from bridgemon.probes.dispatch import run_check
from bridgemon.probes.pinger import PingerUnavailable
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import CheckSpec, HttpSpec, IcmpSpec, SipSpec
from bridgemon.views import check_json


def cmd_probe(args: argparse.Namespace) -> int:
    try:
        _kind, host, spec = parse_probe_url(args.url)
        spec = _adjust(spec, args)
    except ValueError as exc:
        print(f"bridgemon probe: {exc}", file=sys.stderr)
        return exits.USAGE

    async def main() -> ProbeResult:
        # No inventory: the [monitor] defaults (ICMP mode, name lookup timeout, sockets).
        ctx = ProbeContext.from_settings(MonitorModel())
        try:
            if isinstance(spec, IcmpSpec):
                ctx.pinger.check()
            return await run_check(host, spec, ctx)
        finally:
            ctx.pinger.close()

    try:
        result = asyncio.run(main())
    except PingerUnavailable as exc:
        print(f"bridgemon probe: {exc}", file=sys.stderr)
        return exits.USAGE
    view = check_json(result)
    if args.format == "json":
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        _print_table(args.url, view)
    return exits.OK if result.ok else exits.FAIL


def _adjust(spec: CheckSpec | IcmpSpec, args: argparse.Namespace) -> CheckSpec | IcmpSpec:
    changes: dict[str, object] = {}
    if args.count is not None:
        if not isinstance(spec, IcmpSpec):
            raise ValueError("--count applies to icmp:// only")
        if not 1 <= args.count <= 1000:
            raise ValueError("--count must be between 1 and 1000")
        changes["count"] = args.count
    if args.timeout is not None:
        if not 0 < args.timeout <= 300:
            raise ValueError("--timeout must be between 0 and 300 seconds")
        changes["timeout"] = args.timeout
    if args.insecure:
        if not isinstance(spec, HttpSpec | SipSpec):
            raise ValueError("--insecure applies to https:// and sips:// only")
        changes["verify_tls"] = False
    return dataclasses.replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def _print_table(url: str, view: Mapping[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # The URL and every value (a device's reason phrase, a certificate's name) are data:
    # Text, never markup, so "[/]" in a SIP reason prints as written instead of crashing.
    ok = bool(view["ok"])
    verdict = ("ĐẠT (pass)", "green") if ok else ("KHÔNG ĐẠT (fail)", "red")
    table = Table(title=Text.assemble(url, " — ", verdict), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in view.items():
        if key == "rtts_ms" or value is None:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(Text(key), Text(str(value)))
    Console(highlight=False).print(table)
