"""Command line: ``bridgemon run | check-config | sites | test | probe | history | report |
passwd | reflect | lab``.

Exit codes: ``bridgemon.exits``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from bridgemon import __version__, exits
from bridgemon.config import (
    Config,
    ConfigError,
    config_path,
    exposure_problem,
    load_config,
    parse_listen,
)
from bridgemon.inventory import SelectorError
from bridgemon.shards import Shard, owners, parse_shard

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
# Options every command takes, before or after the command's name (`bridgemon -c F run` and
# `bridgemon run -c F` alike). Where they stand decides the attribute they land in, so one
# given in both places is seen and refused rather than silently overriding the other.
GLOBAL_OPTIONS = (("config", "config_after"), ("log_level", "log_level_after"))
# Commands with a parser of their own: everything after their name is handed to it.
PROG_REFLECT = "bridgemon reflect"
MIN_PASSWORD = 10


def _shard_option(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_options(*, after_command: bool) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    suffix = "_after" if after_command else ""
    options.add_argument(
        "-c", "--config", metavar="PATH", dest="config" + suffix,
        help="inventory file (default: $BRIDGEMON_CONFIG, else ./config/sites.toml)",
    )
    options.add_argument(
        "--log-level", choices=LOG_LEVELS, dest="log_level" + suffix,
        help=f"log verbosity (default: {DEFAULT_LOG_LEVEL})",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridgemon",
        description="Readiness monitor for videoconference bridge sites (điểm cầu).",
        parents=[_global_options(after_command=False)],
    )
    parser.add_argument("--version", action="version", version=f"bridgemon {__version__}")
    commands = _Commands(
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
        _global_options(after_command=True),
    )

    run = commands.add_parser("run", help="probe every site on schedule and serve /metrics")
    run.add_argument(
        "--listen", metavar="HOST:PORT",
        help="where to serve /metrics and the API (default: from the config, 127.0.0.1:9470)",
    )
    run.add_argument(
        "--shard", metavar="N/M", type=_shard_option,
        help="probe only share N of M daemons (overrides [monitor] shard; default 1/1)",
    )

    commands.add_parser("check-config", help="validate the inventory; PATH:LINE errors, exit 2")

    sites = commands.add_parser("sites", help="print the site tree")
    sites.add_argument(
        "--select", metavar="EXPR", help="id, level:LEVEL, under:ID, comma-separated"
    )
    sites.add_argument("--format", choices=["tree", "json"], default="tree")
    sites.add_argument(
        "--shard", metavar="N/M", type=_shard_option,
        help="only the sites shard N of M daemons exports, and the sites per shard",
    )

    test = commands.add_parser(
        "test", help="pre-event connection test: probe sites hard now and report",
        description="Probe the chosen sites now (a long ICMP burst and every service "
        "check), print the readiness report and store it in the history. Exit 0 when "
        "every site can join (ready, or degraded unless --strict), 1 when any cannot, "
        "2 on a usage or configuration error.",
    )
    chosen = test.add_mutually_exclusive_group()
    chosen.add_argument("--select", metavar="EXPR",
                        help="sites: id, level:LEVEL, under:ID, comma-separated (default: all)")
    chosen.add_argument("--event", metavar="ID", help="the participants of this event")
    test.add_argument("--count", type=int, metavar="N",
                      help="echoes per site (default: [test].count, 50)")
    test.add_argument("--format", choices=["table", "json", "csv", "html"], default="table")
    test.add_argument("-o", "--output", metavar="FILE", help="write the report here")
    test.add_argument("--strict", action="store_true", help="degraded sites fail too")
    test.add_argument("--no-history", action="store_true", help="do not store the run")

    probe = commands.add_parser(
        "probe", help="one check against one target, now (exit 0 pass, 1 fail, 2 bad URL)",
        description="Run one check right now and print the result: icmp://HOST, "
        "tcp://HOST:PORT, h323://HOST, sip://HOST[:PORT][;transport=udp|tcp|tls], "
        "sips://HOST[:PORT], http://..., https://..., and a video-grade packet train: "
        "stamp://HOST[:PORT]?rate=2M&size=1200&duration=5s[&dscp=AF41][&wait=1s]; and the "
        "path MTU: mtu://HOST[?size=1472]",
    )
    probe.add_argument("url", metavar="URL")
    probe.add_argument("--format", choices=["table", "json"], default="table")
    probe.add_argument("--count", type=int, metavar="N", help="icmp: echoes (default 5)")
    probe.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="override the check's timeout")
    probe.add_argument("--insecure", action="store_true",
                       help="https/sips: do not verify the certificate")

    history = commands.add_parser("history", help="list stored test runs")
    history.add_argument("--event", metavar="ID", help="only runs of this event")
    history.add_argument("--limit", type=int, default=30, metavar="N")
    history.add_argument("--format", choices=["table", "json"], default="table")

    report = commands.add_parser("report", help="re-render a stored test run")
    report.add_argument("run_id", metavar="RUN_ID")
    report.add_argument("--format", choices=["table", "json", "csv", "html"], default="table")
    report.add_argument("-o", "--output", metavar="FILE", help="write the report here")

    passwd = commands.add_parser(
        "passwd", help="hash a web user's password: prints the [[web.users]] entry",
        description="Read a password twice without echo (from standard input, one line "
        "or two equal ones, when it is not a terminal) and print the [[web.users]] entry "
        "with its argon2id hash, to paste into the inventory. The password itself is "
        "never printed. Exit 0, or 2 when the two differ or it is shorter than "
        f"{MIN_PASSWORD} characters.",
    )
    passwd.add_argument("name", nargs="?", metavar="NAME", help="the user's sign-in name")
    passwd.add_argument("--role", choices=["viewer", "operator"], default="viewer",
                        help="viewer: read only; operator: also start test runs, "
                             "acknowledge, add notes (default: viewer)")

    # `reflect` is run by the reflector's own command line (see main); its options are
    # declared here too, from that parser, so `bridgemon --help` lists it and a README
    # command line using it parses.
    from bridgemon.stamp.reflector import build_parser as reflector_parser

    commands.add_parser(
        "reflect", help="STAMP reflector for a site without one in its router (UDP 862)",
        description="Answer STAMP (RFC 8762) and TWAMP-light packet trains, bounded in "
        "rate and sessions. Exit 0 when stopped (SIGTERM, Ctrl-C), 1 when it cannot "
        "listen, 2 on a usage error.",
        add_help=False, global_options=False, parents=[reflector_parser(PROG_REFLECT)],
    )
    commands.add_parser(
        "lab", help="network emulator for demos and tests (root): up, set, clear, status, down",
        add_help=False, global_options=False,
    )
    return parser


class _Commands:
    """The subparsers, each also taking the global options after the command's name."""

    def __init__(
        self, action: argparse._SubParsersAction[argparse.ArgumentParser],
        options: argparse.ArgumentParser,
    ) -> None:
        self._action = action
        self._options = options

    def add_parser(self, name: str, *, global_options: bool = True,
                   parents: Sequence[argparse.ArgumentParser] = (),
                   **kwargs: Any) -> argparse.ArgumentParser:
        own = [self._options] if global_options else []
        return self._action.add_parser(name, parents=[*own, *parents], **kwargs)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse, then merge each global option given before or after the command into one
    attribute (``args.config``, ``args.log_level``); given in both places with different
    values is a usage error (exit 2) naming both."""
    args = parser.parse_args(argv)
    for name, after in GLOBAL_OPTIONS:
        before_value, after_value = getattr(args, name, None), getattr(args, after, None)
        if hasattr(args, after):
            delattr(args, after)
        if before_value is not None and after_value is not None and before_value != after_value:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} given twice, {before_value!r} before the command and "
                         f"{after_value!r} after it; give it once")
        setattr(args, name, after_value if after_value is not None else before_value)
    if args.log_level is None:
        args.log_level = DEFAULT_LOG_LEVEL
    return args


def _load(args: argparse.Namespace) -> Config | None:
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        count = len(exc.issues)
        print(f"{path}: {count} error{'s' if count != 1 else ''}; nothing was started",
              file=sys.stderr)
        return None
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def command_word(argv: Sequence[str]) -> int | None:
    """Where the command's name is in ``argv`` (the first word that is neither a global
    option nor an option's value), or None."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-c", "--config", "--log-level"):
            index += 2
        elif arg.startswith("-"):
            index += 1
        else:
            return index
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `bridgemon lab ...` and `bridgemon reflect ...` have their own parsers; hand them
    # everything after the word.
    index = command_word(argv)
    if index is not None and argv[index] == "lab":
        from bridgemon.lab.cli import main as lab_main

        return lab_main(argv[index + 1 :])
    if index is not None and argv[index] == "reflect":
        from bridgemon.stamp.reflector import main as reflector_main

        return reflector_main(argv[index + 1 :], prog=PROG_REFLECT)
    parser = build_parser()
    args = parse_args(parser, argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler narrates every job run at INFO; our own round logs say what matters.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))
    if args.command == "check-config":
        return cmd_check_config(args)
    if args.command == "sites":
        return cmd_sites(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "passwd":
        return cmd_passwd(args)
    if args.command == "probe":
        from bridgemon.cli_probe import cmd_probe

        return cmd_probe(args)
    if args.command == "test":
        from bridgemon.cli_testrun import cmd_test

        config = _load(args)
        if config is None:
            return exits.USAGE
        return cmd_test(args, config)
    if args.command in ("history", "report"):
        # They only read stored runs: a state directory is all they need, even while the
        # inventory does not load.
        from bridgemon import cli_testrun

        state_dir = cli_testrun.stored_runs_dir(config_path(args.config))
        command = cli_testrun.cmd_history if args.command == "history" \
            else cli_testrun.cmd_report
        return command(args, state_dir)
    parser.error(f"unknown command {args.command}")
    return exits.USAGE


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return exits.USAGE
    inventory = config.inventory
    per_level = ", ".join(
        f"{sum(1 for s in inventory.sites.values() if s.level == level.id)} {level.id}"
        for level in inventory.levels
    )
    events = f"; {len(config.events)} event{'s' if len(config.events) != 1 else ''}" \
        if config.events else ""
    web = config.web
    users = f"; web: {len(web.users)} user{'s' if len(web.users) != 1 else ''}" \
        f"{', TLS' if web.tls else ''}" if web.users else ""
    print(f"{config.path}: OK — {len(inventory)} sites ({per_level}){events}{users}")
    return exits.OK


def cmd_sites(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return exits.USAGE
    inventory = config.inventory
    try:
        chosen = {s.id for s in inventory.select(args.select)} if args.select else None
    except SelectorError as exc:
        print(f"bridgemon: --select: {exc}", file=sys.stderr)
        return exits.USAGE
    shard: Shard | None = args.shard
    owner = owners(inventory, shard.count) if shard is not None else {}
    if shard is not None:
        # Its own sites, and the roots above them it probes (shown, marked, by the tree).
        mine = {site_id for site_id, index in owner.items() if index == shard.index}
        kept = mine | set(inventory.roots)
        chosen = kept if chosen is None else chosen & kept
        per_shard = [sum(1 for index in owner.values() if index == n)
                     for n in range(1, shard.count + 1)]
        print(f"shard {shard}: {len(mine)} of {len(inventory)} sites; per shard: "
              + ", ".join(f"{n}/{shard.count} {count}" for n, count in
                          enumerate(per_shard, 1))
              + " (top sites are probed by every shard, exported by one)", file=sys.stderr)
    if args.format == "json":
        rows = [
            {"id": s.id, "name": s.name, "level": s.level, "parent": s.parent,
             "address": s.address, "depth": depth,
             **({"shard": owner[s.id]} if shard is not None else {})}
            for s, depth in inventory.walk() if chosen is None or s.id in chosen
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return exits.OK

    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    # Names, addresses and the path are data: Text, never markup, so a "[/]" or "[bold]"
    # in a site's name is printed as written instead of crashing or styling the tree.
    level_names = {level.id: level.name for level in inventory.levels}
    root = Tree(Text.assemble((str(config.path), "bold"), f" — {len(inventory)} sites"))
    nodes: dict[str, Tree] = {}
    for site, _depth in inventory.walk():
        if chosen is not None and site.id not in chosen:
            continue
        parent = nodes.get(site.parent or "", root)
        label = Text.assemble(
            (site.name, "bold"), " ", (f"({site.id}, {level_names[site.level]})", "dim"), " ",
            (site.address, "cyan"),
        )
        if shard is not None and owner[site.id] != shard.index:
            label.append(f" (probed for its subtree; exported by shard {owner[site.id]})",
                         "dim")
        nodes[site.id] = parent.add(label)
    Console(soft_wrap=True).print(root)
    return exits.OK


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return exits.USAGE
    listen = None
    if args.listen:
        try:
            listen = parse_listen(args.listen)
        except ValueError as exc:
            print(f"bridgemon: --listen: {exc}", file=sys.stderr)
            return exits.USAGE
        problem = exposure_problem(config.web, listen)
        if problem is not None:
            print(f"bridgemon: --listen: {problem}", file=sys.stderr)
            return exits.USAGE

    from bridgemon.daemon import Monitor
    from bridgemon.probes.pinger import PingerUnavailable

    async def run() -> None:
        await Monitor(config, listen=listen, shard=args.shard).run_forever()

    try:
        asyncio.run(run())
    except PingerUnavailable as exc:
        print(f"bridgemon: {exc}", file=sys.stderr)
        return exits.USAGE
    except OSError as exc:
        print(f"bridgemon: cannot start: {exc}", file=sys.stderr)
        return exits.USAGE
    except KeyboardInterrupt:
        pass
    return exits.OK


def cmd_passwd(args: argparse.Namespace) -> int:
    """The [[web.users]] entry for NAME with a fresh argon2id hash. The password is read
    without echo, never printed, never logged."""
    from bridgemon.config_models import user_name

    name = None
    if args.name is not None:
        try:
            name = user_name(args.name)
        except ValueError as exc:
            print(f"bridgemon passwd: {exc}", file=sys.stderr)
            return exits.USAGE
    try:
        password = _read_password()
    except _PasswordRefused as exc:
        print(f"bridgemon passwd: {exc}", file=sys.stderr)
        return exits.USAGE
    from argon2 import PasswordHasher

    hashed = PasswordHasher().hash(password)
    del password
    print("[[web.users]]")
    print(f"name = {json.dumps(name if name else 'TÊN', ensure_ascii=False)}"
          + ("" if name else "  # the sign-in name"))
    print(f'role = "{args.role}"')
    print(f'password_hash = "{hashed}"')
    return exits.OK


class _PasswordRefused(Exception):
    pass


def _read_password() -> str:
    """Twice without echo on a terminal; from a pipe, the first line (and, if a second is
    given, it must match), so a script can set a password."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("Mật khẩu (password): ")
        _check_password(first)
        again = getpass.getpass("Nhập lại (again): ")
        if again != first:
            raise _PasswordRefused("hai lần nhập không khớp (the two entries differ); "
                                   "nothing was written")
        return first
    lines = sys.stdin.read(64 * 1024).splitlines()
    if not lines:
        raise _PasswordRefused("no password on standard input (chưa nhập mật khẩu)")
    first = lines[0]
    _check_password(first)
    if len(lines) > 1 and lines[1] != first:
        raise _PasswordRefused("the two lines differ (hai lần nhập không khớp); nothing "
                               "was written")
    return first


def _check_password(password: str) -> None:
    from bridgemon.web.auth import MAX_FIELD

    if len(password) > MAX_FIELD:  # the sign-in form takes no more
        raise _PasswordRefused(f"mật khẩu quá dài (the password must have at most "
                               f"{MAX_FIELD} characters)")
    if len(password) < MIN_PASSWORD:
        raise _PasswordRefused(f"mật khẩu quá ngắn: cần ít nhất {MIN_PASSWORD} ký tự "
                               f"(the password must have at least {MIN_PASSWORD} "
                               "characters)")
