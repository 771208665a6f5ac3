"""``bridgemon lab ...``: start, steer, inspect and stop the lab from a shell.

``main(argv)`` takes the arguments after ``bridgemon lab``::

    bridgemon lab up [--name N] [--foreground] [--net CIDR] [--host-addr A] [--lab-addr A]
    bridgemon lab set ADDR|PREFIX [--delay MS] [--jitter MS] [--loss RATIO|PCT%] [--down]
                                  [--drop tcp:1720 udp:5060 ...]
                                  [--rate 1M] [--return-rate 512k] [--queue MS]
                                  [--mtu 1400 [--mtu-blackhole]]
    bridgemon lab clear [ADDR|PREFIX]
    bridgemon lab status [--json]
    bridgemon lab exec -- COMMAND ...      (run a command, e.g. a server, in the namespace)
    bridgemon lab down

Every subcommand takes ``--name`` (default ``$BRIDGEMON_LAB_NAME`` or ``bmlab``).
Exit status (``bridgemon.exits``): 0 done, 1 lab error (not root, not running, ...), 2 usage
error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from bridgemon import exits
from bridgemon.lab import Lab, LabError
from bridgemon.lab.impair import DEFAULT_QUEUE_MS, describe_shaping
from bridgemon.lab.netsetup import DEFAULT_HOST_ADDR, DEFAULT_LAB_ADDR, DEFAULT_NAME, DEFAULT_NET
from bridgemon.stamp.units import parse_rate


def _ratio(text: str) -> float:
    # "0.1" and "10%" both mean a tenth: people type either.
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a ratio: {text!r} (use 0.1 or 10%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"loss must be within 0..1 (or 0%..100%), got {text}")
    return value


def _ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"milliseconds must be ≥ 0, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mtu(text: str) -> int:
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"MTU must be a whole number 68-65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--name",
        default=os.environ.get("BRIDGEMON_LAB_NAME", DEFAULT_NAME),
        help="lab name: namespace, devices NAME-h/NAME-l (default %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="bridgemon lab",
        description="Userspace network emulator for tests and demos: every address of "
        f"{DEFAULT_NET} answers inside a network namespace, with per-address delay, "
        "jitter, loss, down and port filters. Needs root.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="start the lab (in the background)")
    up.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C tears the lab down"
    )
    up.add_argument("--net", default=DEFAULT_NET, help="range answered in the lab")
    up.add_argument("--host-addr", default=DEFAULT_HOST_ADDR, help="host-side TUN address")
    up.add_argument("--lab-addr", default=DEFAULT_LAB_ADDR, help="lab-side TUN address")
    up.add_argument("--seed", type=int, default=None, help="seed loss/jitter randomness")
    up.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a running lab of this name to stop (default: fail)",
    )

    st = sub.add_parser(
        "set",
        parents=[common],
        help="impair an address or prefix",
        description="Set (replace) the impairment of an address or prefix, toward the "
        "site only. The most specific prefix wins, so a rule with no option exempts an "
        "address from a wider rule.",
    )
    st.add_argument("target", metavar="ADDR|PREFIX")
    st.add_argument("--delay", type=_ms, default=0.0, metavar="MS")
    st.add_argument(
        "--jitter",
        type=_ms,
        default=0.0,
        metavar="MS",
        help="uniform extra delay in [-MS, +MS] per packet",
    )
    st.add_argument(
        "--loss", type=_ratio, default=0.0, metavar="RATIO", help="drop probability, 0.1 or 10%%"
    )
    st.add_argument("--down", action="store_true", help="drop everything")
    st.add_argument(
        "--drop",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILTER",
        help="drop matching packets: tcp:1720 udp:5060 udp:5060-5070 tcp icmp",
    )
    st.add_argument("--rate", type=_rate, default=0.0, metavar="RATE",
                    help="limit toward the site, e.g. 1M or 512k (a bottleneck with a queue)")
    st.add_argument("--return-rate", type=_rate, default=0.0, metavar="RATE",
                    help="limit of what comes back from the site (its uplink)")
    st.add_argument("--queue", type=_ms, default=DEFAULT_QUEUE_MS, metavar="MS",
                    help="queue of the rate limits, in ms at their rate (default %(default)g)")
    st.add_argument("--mtu", type=_mtu, default=0, metavar="BYTES",
                    help="largest packet toward the site; DF packets get ICMP "
                    "'fragmentation needed', others are fragmented")
    st.add_argument("--mtu-blackhole", action="store_true",
                    help="drop too-large DF packets silently instead (an MTU black hole)")

    cl = sub.add_parser("clear", parents=[common], help="remove one impairment, or all")
    cl.add_argument("target", nargs="?", metavar="ADDR|PREFIX")

    ss = sub.add_parser("status", parents=[common], help="impairments and counters")
    ss.add_argument("--json", action="store_true", help="machine-readable output")

    ex = sub.add_parser("exec", parents=[common], help="run a command inside the lab")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")

    sub.add_parser("down", parents=[common], help="stop the lab and remove everything")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return int(exc.code or 0)
    try:
        handler = {
            "up": _up, "set": _set, "clear": _clear, "status": _status,
            "exec": _exec, "down": _down,
        }[args.command]  # fmt: skip
        return handler(args)
    except LabError as exc:
        print(f"bridgemon lab: {exc}", file=sys.stderr)
        return exits.FAIL
    except ValueError as exc:
        print(f"bridgemon lab: {exc}", file=sys.stderr)
        return exits.USAGE
    except OSError as exc:  # e.g. the run directory is not writable without root
        print(f"bridgemon lab: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return exits.FAIL


def _usage_text(lab: Lab) -> str:
    n = "" if lab.name == DEFAULT_NAME else f" --name {lab.name}"
    example = str(lab.net.network_address + 258)  # e.g. 198.18.1.2
    return "\n".join([
        f"lab {lab.name!r} is up (forwarder pid {lab.pid}, log {lab.spec.log_path})",
        f"  every address in {lab.net} answers, e.g.   ping {example}",
        f"  host side {lab.host_addr} (dev {lab.host_dev}); lab side {lab.lab_addr} "
        f"(dev {lab.lab_dev}, netns {lab.netns})",
        f"  impair:  bridgemon lab set{n} {example} --delay 40 --jitter 5 --loss 2%",
        f"           bridgemon lab set{n} {lab.net.network_address + 512}/24 --down",
        f"           bridgemon lab set{n} {example} --drop tcp:1720 udp:5060",
        f"           bridgemon lab set{n} {example} --rate 1M --return-rate 512k --mtu 1400",
        f"  servers: bridgemon lab exec{n} -- {sys.executable} -m bridgemon.lab.servers "
        "--tcp 1720 --tcp 443 --sip 5060",
        f"           bridgemon lab exec{n} -- {sys.executable} -m bridgemon.stamp.reflector "
        "--listen 0.0.0.0:862   (a STAMP reflector on every lab address)",
        f"           (or: ip netns exec {lab.netns} COMMAND)",
        f"  status:  bridgemon lab status{n}     clear: bridgemon lab clear{n} [ADDR]",
        f"  stop:    bridgemon lab down{n}",
    ])  # fmt: skip


def _up(args: argparse.Namespace) -> int:
    lab = Lab(
        args.name,
        net=args.net,
        host_addr=args.host_addr,
        lab_addr=args.lab_addr,
        seed=args.seed,
        wait=args.wait,
    )
    if not args.foreground:
        lab.start(detach=True)
        print(_usage_text(lab))
        return exits.OK
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop.set())
    with lab.start():
        print(_usage_text(lab))
        print("running in the foreground; Ctrl-C stops and removes the lab", flush=True)
        while not stop.wait(1.0):
            if not lab.running:
                print(f"lab {lab.name!r} was stopped from elsewhere", flush=True)
                return exits.OK
        print(f"stopping lab {lab.name!r}", flush=True)
    return exits.OK


def _set(args: argparse.Namespace) -> int:
    drop = [f for item in args.drop for f in item.split(",") if f]  # also "tcp:1720,udp:5060"
    lab = Lab.attach(args.name)
    rule = lab.impair(
        args.target,
        delay_ms=args.delay,
        jitter_ms=args.jitter,
        loss=args.loss,
        down=args.down,
        drop=drop,
        rate_bps=args.rate,
        return_rate_bps=args.return_rate,
        queue_ms=args.queue,
        mtu=args.mtu,
        mtu_blackhole=args.mtu_blackhole,
    )
    print(f"{rule['target']}: {_describe(rule)}")
    return exits.OK


def _clear(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.name)
    n = lab.clear(args.target)
    what = args.target or "all impairments"
    print(f"cleared {what} ({n} rule{'s' if n != 1 else ''} removed)")
    return exits.OK


def _describe(rule: dict[str, Any]) -> str:
    parts: list[str] = []
    if rule["down"]:
        parts.append("down")
    if rule["delay_ms"] or rule["jitter_ms"]:
        jitter = f" ±{rule['jitter_ms']:g}ms" if rule["jitter_ms"] else ""
        parts.append(f"delay {rule['delay_ms']:g}ms{jitter}")
    if rule["loss"]:
        parts.append(f"loss {rule['loss'] * 100:g}%")
    if rule["drop"]:
        parts.append("drop " + ",".join(rule["drop"]))
    parts.extend(describe_shaping(rule))
    return ", ".join(parts) or "no impairment"


def _status(args: argparse.Namespace) -> int:
    status = Lab.attach(args.name).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return exits.OK
    print(
        f"lab {status['name']}: up, pid {status['pid']}, uptime {status['uptime_s']:.0f} s, "
        f"{status['net']} in netns {status['netns']}"
    )
    rules = status["impairments"]
    print("impairments:" if rules else "impairments: none")
    for rule in rules:
        c = rule["counters"]
        dropped = (c["dropped_down"] + c["dropped_filter"] + c["dropped_loss"]
                   + c["dropped_rate"] + c["dropped_mtu"] + c["return_dropped_rate"])
        print(
            f"  {rule['target']:<18} {_describe(rule):<40} matched {c['matched']}, "
            f"delayed {c['delayed']}, dropped {dropped}"
        )
    tl, th = status["counters"]["to_lab"], status["counters"]["to_host"]
    print(
        f"host→lab: received {tl['received']}, forwarded {tl['forwarded']}, "
        f"delayed {tl['delayed']} (queued now {tl['queued']}), dropped down "
        f"{tl['dropped_down']} / filter {tl['dropped_filter']} / loss {tl['dropped_loss']}"
        f" / rate {tl['dropped_rate']} / mtu {tl['dropped_mtu']}, ICMP frag-needed "
        f"{tl['icmp_mtu']}, fragments {tl['fragments']}"
    )
    print(f"lab→host: received {th['received']}, forwarded {th['forwarded']}, delayed "
          f"{th['delayed']}, dropped rate {th['dropped_rate']}")
    late = status["release_lateness_us"]
    if late["samples"]:
        print(
            f"delayed-packet release lateness: p50 {late['p50']} µs, p99 {late['p99']} µs "
            f"over the last {late['samples']}"
        )
    return exits.OK


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("bridgemon lab exec: give a command, e.g. -- python3 -m http.server", file=sys.stderr)
        return exits.USAGE
    lab = Lab.attach(args.name)
    return subprocess.call(lab.exec_argv(cmd))


def _down(args: argparse.Namespace) -> int:
    try:
        lab = Lab.attach(args.name)
    except LabError:
        if Lab.cleanup(args.name):
            print(f"lab {args.name!r} was not running; any leftovers are removed")
            return exits.OK
        raise
    lab.stop()
    print(f"lab {args.name!r} is down")
    return exits.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
