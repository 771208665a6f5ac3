"""``bridgemon probe URL``: what a technician types while on the phone with a site.

No inventory needed: the URL says what to check. The JSON has the fields of a check in a
test-run report. ``stamp://`` URLs (a video-grade packet train, ``bridgemon.stamp``) take
their own path: the train's figures are the check's fields, and its verdict decides the
exit (ready or degraded pass, as a site that can join does). ``mtu://HOST?size=1472``
runs the path MTU check as a profile's ``type = "mtu"`` check would.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from bridgemon import exits
from bridgemon.cli_probe_url import is_stamp_url, parse_probe_url
from bridgemon.config import MonitorModel
from bridgemon.probes import ProbeContext
from bridgemon.probes.dispatch import run_check
from bridgemon.probes.pinger import PingerUnavailable
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import CheckSpec, HttpSpec, IcmpSpec, MtuSpec, SipSpec
from bridgemon.views import check_json


def cmd_probe(args: argparse.Namespace) -> int:
    if is_stamp_url(args.url):
        return _probe_stamp(args)
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
    elif isinstance(spec, MtuSpec):
        _print_mtu(args.url, view)
    else:
        _print_table(args.url, view)
    return exits.OK if result.ok else exits.FAIL


def _print_mtu(url: str, view: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    ok = bool(view["ok"])
    verdict = ("ĐẠT (pass)", "green") if ok else ("KHÔNG ĐẠT (fail)", "red")
    table = Table(title=Text.assemble(url, " — ", verdict), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")

    def row(label: str, value: object) -> None:
        table.add_row(Text(label), Text(str(value)))

    row("đích (target)", view["target"])
    packet = view.get("packet_size")
    row("gói thử (packet)", f"{packet if packet is not None else view['size'] + 28} B "
        f"({view['size']} B ICMP payload), DF")
    if view.get("outcome"):
        row("kết quả (outcome)", view["outcome"])
    if view.get("mtu") is not None:
        row("MTU đường truyền (path MTU)", view["mtu"])
    if view.get("largest_ok") and view.get("smallest_lost"):
        row("dò (search)", f"{view['largest_ok']} B pass, {view['smallest_lost']} B lost")
    if view.get("reporter"):
        row("router báo (reported by)", view["reporter"])
    if view.get("echo_rtt_ms") is not None:
        row("RTT", f"{view['echo_rtt_ms']} ms")
    if view.get("reason"):
        row("lý do (reason)", f"{view.get('reason_vi') or ''} — {view['reason']}")
    Console(highlight=False).print(table)


def _adjust(spec: CheckSpec | IcmpSpec, args: argparse.Namespace) -> CheckSpec | IcmpSpec:
    changes: dict[str, object] = {}
    if args.count is not None:
        if not isinstance(spec, IcmpSpec):
            raise ValueError("--count applies to icmp:// only")
        if not 1 <= args.count <= 1000:
            raise ValueError("--count must be between 1 and 1000")
        changes["count"] = args.count
    if args.timeout is not None:
        if isinstance(spec, MtuSpec):
            raise ValueError("--timeout does not apply to mtu:// (a few echoes of 1 s each)")
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


def _probe_stamp(args: argparse.Namespace) -> int:
    from bridgemon.stamp import judge, parse_stamp_url, run_train
    from bridgemon.stamp.check import train_check

    try:
        spec = parse_stamp_url(args.url)
        for option, given in (("--count", args.count is not None),
                              ("--timeout", args.timeout is not None),
                              ("--insecure", args.insecure)):
            if given:
                raise ValueError(f"{option} does not apply to stamp:// (a train lasts its "
                                 "duration=, then waits wait= for the last answers)")
    except ValueError as exc:
        print(f"bridgemon probe: {exc}", file=sys.stderr)
        return exits.USAGE
    # run_train bounds itself (resolver, train, answers' wait) and never raises for what
    # the network does.
    train = asyncio.run(run_train(spec))
    verdict = judge(train)
    result = train_check(train, verdict)
    view = check_json(result)
    if args.format == "json":
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        _print_train(args.url, view)
    return exits.OK if result.ok else exits.FAIL


def _print_train(url: str, view: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bridgemon.verdicts import WORDS_EN, known, words_vi

    ok = bool(view["ok"])
    state = str(view["state"])
    verdict = ("ĐẠT (pass)", "green") if ok else ("KHÔNG ĐẠT (fail)", "red")
    table = Table(title=Text.assemble(url, " — ", verdict), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")

    def row(label: str, value: object) -> None:
        # Every value is data (a reflector's address, a reason quoting a URL): Text.
        table.add_row(Text(label), Text(str(value)))

    row("kết quả (verdict)", f"{words_vi(state)} ({WORDS_EN[known(state)]})")
    row("đoàn gói (train)", f"{_rate(view['rate_bps'])} × {view['duration_s']:g} s, "
        f"{view['size']} B, {view['dscp']} → {view['target']}"
        + (f" ({view['address']})" if view["address"] and
           not str(view["target"]).startswith(str(view["address"])) else ""))
    if view["error"] is not None:
        row("lỗi (error)", f"{view['error_vi']} ({view['error']})")
    trip = view.get("round_trip")
    if isinstance(trip, dict):
        row("gói (packets)", f"{view['sent']} sent, {trip['received']} answered, "
            f"{_pct(trip['loss_ratio'])} lost round trip")
        rtt = trip["rtt_ms"]
        if rtt is not None:
            row("trễ khứ hồi (RTT)", "min {min} / avg {avg} / p95 {p95} / max {max} ms"
                .format(**rtt))
        for direction, label in (("downlink", "chiều xuống (downlink)"),
                                 ("uplink", "chiều lên (uplink)")):
            stats = view[direction]
            parts = []
            if stats["loss_ratio"] is not None:
                parts.append(f"loss {_pct(stats['loss_ratio'])}")
            if stats["jitter_ms"] is not None:
                parts.append(f"jitter {stats['jitter_ms']} ms")
            if stats["carried_bps"] is not None:
                parts.append(f"carried {_rate(stats['carried_bps'])}")
            row(label, ", ".join(parts) or "—")
        row("MOS (video)", view["mos"])
        row("reflector", view["reflector_mode"])
    anomalies = [f"{k} {v}" for k, v in view["anomalies"].items()
                 if v and k not in ("icmp", "foreign_source", "send_error")]
    anomalies += [f"ICMP {k} {v}" for k, v in view["anomalies"]["icmp"].items()]
    if anomalies:
        row("bất thường (anomalies)", ", ".join(anomalies))
    for reason in view["reasons"]:
        row("lý do (reason)", f"{reason['vi']} — {reason['en']}")
    for note in view["notes"]:
        row("ghi chú (note)", f"{note['vi']} — {note['en']}")
    Console(highlight=False).print(table)


def _rate(bps: float) -> str:
    from bridgemon.stamp.units import format_rate

    return format_rate(bps)


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f} %"
