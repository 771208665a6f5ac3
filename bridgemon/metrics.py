"""Prometheus exposition of one Snapshot per scrape.

Series exist only for sites in the current inventory, so sites removed by a reload vanish
at the next scrape. Each site's lines are rendered once, when the site is judged
(``site_series``), and a scrape joins them: at 12,000 sites prometheus_client's per-sample
formatting took seconds per scrape on the loop; the daemon's own families still use it.
Names: prefix ``bridgemon_``, base units, the site id in ``site``; human names, levels and
parents only in ``bridgemon_site_info``.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridgemon import __version__, compiled
from bridgemon.durations import format_duration
from bridgemon.events import Event
from bridgemon.inventory import Inventory, Site
from bridgemon.probes.result import ProbeResult
from bridgemon.readiness import Verdict
from bridgemon.snapshot import Snapshot
from bridgemon.vantage_view import VantageFigures
from bridgemon.verdicts import STATES, can_join, count, in_order

INFO_LABELS = ("site", "name", "level", "parent", "address", "profile", "contact", "phone")


class _FamiliesCollector(Collector):
    def __init__(self, families: Callable[[], Iterator[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return self._families()


def vantage_labels(vantage: str | None) -> str:
    """The label prefix of a vantage's site lines ('vantage="NAME",'; "" for none), given
    to the board, which writes it into each site's lines once, when the site is judged."""
    return f'vantage="{_escape(vantage)}",' if vantage is not None else ""


def _generate(families: Callable[[], Iterator[Metric]], vantage: str | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if vantage is None:
        registry.register(_FamiliesCollector(families))
    else:
        def labelled() -> Iterator[Metric]:
            for family in families():
                family.samples = [sample._replace(labels={"vantage": vantage, **sample.labels})
                                  for sample in family.samples]
                yield family
        registry.register(_FamiliesCollector(labelled))
    return generate_latest(registry)


def render(snapshot: Snapshot) -> bytes:
    """The text exposition of one snapshot."""
    return b"".join(render_parts(snapshot))


def render_parts(snapshot: Snapshot) -> Iterator[bytes]:
    """The exposition in pieces of about a millisecond's work each (``pieces`` joined)."""
    for _slot, parts in pieces(snapshot):
        yield b"".join(parts)


#: Where a piece sits in the exposition (stable from one scrape to the next while the
#: inventory stays), and the bytes it is made of, in order.
Piece = tuple[Hashable, Sequence[bytes]]


def pieces(snapshot: Snapshot, sites: Sequence[str] | None = None,
           own: bool = True) -> Iterator[Piece]:
    """The exposition as pieces of about a millisecond's work each, each with its slot.

    The daemon's own figures and the events are few and go through prometheus_client; the
    sites' lines were rendered when each site was judged and are only gathered here. A
    server yields to the loop between pieces, so a scrape of 12,000 sites never holds the
    engine for more than one piece; and a piece whose bytes are the ones of the previous
    scrape can be sent as it was compressed then (web/gzip_pieces.py).

    ``sites``: only these sites' lines (a part of the scrape, web/scrape_parts.py; in the
    snapshot's order); ``own``: with the daemon's own figures and the events.
    """
    figures = snapshot.vantage
    name = figures.name if figures is not None else None
    if own:
        yield "self", (_generate(lambda: _self_metrics(snapshot), name),)
        if figures is not None:
            yield "vantage", (_generate(lambda: _vantage_metrics(figures), name),)
    yield from _site_families(snapshot, snapshot.order if sites is None else sites)
    if own:
        yield "events", (_events_exposition(snapshot),)


# The current events' exposition, with the objects it was rendered from (compared by
# identity: the snapshot's inventory and events are replaced, never changed).
_EVENTS_CACHE: list[tuple[Inventory, tuple[Event, ...], tuple[object, ...], bytes]] = []


def _events_exposition(snap: Snapshot) -> bytes:
    """Event families, cached: an event of 12,000 participants is 24,000 lines, and they
    change only when the events, the test runs or the window's cut change."""
    latest = snap.latest_runs or {}
    shown = tuple(
        event.id for event in snap.events
        if not (event.end.timestamp() < snap.taken_at - snap.event_window
                or event.start.timestamp() > snap.taken_at + snap.event_window)
    )
    vantage = snap.vantage
    name = vantage.name if vantage is not None else None
    key = (name, snap.exported, shown,
           tuple((event_id, latest[event_id].get("run_id")) for event_id in shown
                 if event_id in latest))
    for inventory, events, cached_key, body in _EVENTS_CACHE:
        if inventory is snap.inventory and events is snap.events and cached_key == key:
            return body
    body = _generate(lambda: chain(_event_metrics(snap), _testrun_path_metrics(snap)), name)
    _EVENTS_CACHE[:] = [(snap.inventory, snap.events, key, body)]
    return body


def _self_metrics(snap: Snapshot) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "bridgemon_build_info",
        "bridgemon version, the Python it runs on, and whether its hot modules run compiled",
        labels=["version", "python", "compiled"],
    )
    build.add_metric([__version__, platform.python_version(),
                      "true" if compiled.ACTIVE else "false"], 1)
    yield build
    yield GaugeMetricFamily(
        "bridgemon_start_time_seconds", "When the daemon started (Unix time)",
        value=snap.started_at,
    )

    reload = snap.reload
    yield GaugeMetricFamily(
        "bridgemon_config_last_reload_successful",
        "1 if the last configuration load or reload succeeded, 0 if it was rejected",
        value=1 if reload.successful else 0,
    )
    yield GaugeMetricFamily(
        "bridgemon_config_last_reload_success_timestamp_seconds",
        "When the running configuration was loaded (Unix time)",
        value=reload.last_success,
    )
    yield GaugeMetricFamily(
        "bridgemon_events_files_quarantined",
        "Saved events files set aside at start because events in them could not be planned "
        "(their conferences are missing from the plan; /healthz names the files)",
        value=len(snap.quarantined),
    )
    sites = GaugeMetricFamily(
        "bridgemon_config_sites", "Sites in the running inventory, per level", labels=["level"]
    )
    levels = GaugeMetricFamily(
        "bridgemon_level_info", "Levels of the site tree, top first (depth 0)",
        labels=["level", "name", "depth"],
    )
    per_level = snap.inventory.level_counts
    for depth, level in enumerate(snap.inventory.levels):
        sites.add_metric([level.id], per_level.get(level.id, 0))
        levels.add_metric([level.id, level.name, str(depth)], 1)
    yield sites
    yield levels

    duration = GaugeMetricFamily(
        "bridgemon_round_duration_seconds", "How long the last probe round took",
        labels=["interval"],
    )
    round_sites = GaugeMetricFamily(
        "bridgemon_round_sites", "Sites probed per round", labels=["interval"]
    )
    rounds = CounterMetricFamily(
        "bridgemon_rounds", "Probe rounds completed", labels=["interval"]
    )
    overruns = CounterMetricFamily(
        "bridgemon_round_overruns",
        "Rounds skipped because the previous round was still running",
        labels=["interval"],
    )
    for figures in snap.rounds:
        label = [format_duration(figures.interval)]
        duration.add_metric(label, figures.last_duration)
        round_sites.add_metric(label, figures.sites)
        rounds.add_metric(label, figures.rounds)
        overruns.add_metric(label, figures.overruns)
    yield from (duration, round_sites, rounds, overruns)

    pinger = snap.pinger
    yield CounterMetricFamily(
        "bridgemon_pinger_echoes_sent", "ICMP echo requests sent by the engine",
        value=pinger.echoes_sent,
    )
    yield CounterMetricFamily(
        "bridgemon_pinger_echoes_received", "ICMP echo replies matched to a request in time",
        value=pinger.echoes_received,
    )
    yield CounterMetricFamily(
        "bridgemon_pinger_stray_replies",
        "ICMP replies that matched no outstanding echo (late, or another pinger's)",
        value=pinger.stray_replies,
    )
    yield CounterMetricFamily(
        "bridgemon_pinger_receive_drops",
        "ICMP replies the kernel dropped because the engine's socket buffer was full "
        "(SO_RXQ_OVFL); each one is an answered echo counted lost",
        value=pinger.receive_drops,
    )
    yield GaugeMetricFamily(
        "bridgemon_pinger_kernel_filter",
        "1 if other processes' ICMP is kept out of the engine's sockets by the kernel",
        value=1 if pinger.kernel_filtered else 0,
    )
    yield GaugeMetricFamily(
        "bridgemon_event_loop_lag_seconds",
        "Worst lateness of the event loop's timers over the last 30 s: echoes, deadlines "
        "and pacing all run on it",
        value=snap.loop_lag,
    )
    mode = GaugeMetricFamily(
        "bridgemon_pinger_socket_info", "ICMP socket kind per address family (raw or dgram)",
        labels=["family", "mode"],
    )
    for family, kind in sorted(pinger.modes.items()):
        mode.add_metric([family, kind], 1)
    yield mode


def _vantage_metrics(figures: VantageFigures) -> Iterator[Metric]:
    """The vantage's name, shard and health (docs/monitoring.md, "Vantage points");
    ``_generate`` adds the ``vantage`` label."""
    info = GaugeMetricFamily(
        "bridgemon_vantage_info", "This daemon's shard of the inventory (value 1)",
        labels=["shard"],
    )
    info.add_metric([figures.shard], 1)
    yield info
    yield GaugeMetricFamily(
        "bridgemon_vantage_shards",
        "How many daemons share this vantage's inventory (M of shard N/M)",
        value=int(figures.shard.rpartition("/")[2]),
    )
    yield GaugeMetricFamily(
        "bridgemon_vantage_up",
        "1 if the vantage sees the world (an anchor answers, not most sites down at once), "
        "0 while it is isolated: failing sites are then judged unknown",
        value=1 if figures.up else 0,
    )
    anchors = GaugeMetricFamily(
        "bridgemon_vantage_anchor_up", "1 if the anchor answered its latest probe",
        labels=["anchor"],
    )
    for anchor, up in figures.anchors:
        anchors.add_metric([anchor], 1 if up else 0)
    yield anchors
    if figures.isolated_since is not None:
        yield GaugeMetricFamily(
            "bridgemon_vantage_isolated_since_timestamp_seconds",
            "When the vantage was found cut off (Unix time); only while it is",
            value=figures.isolated_since,
        )



# Path tests in the rounds (a stamp or mtu check with rounds = true), by _path_series: the
# latest round's train and MTU figures, only for sites that have such a check. Directions
# are the monitor's: downlink monitor → site, uplink site → monitor, round_trip where a
# stateless reflector cannot tell them apart.
PATH_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("bridgemon_stamp_loss_ratio", "gauge",
     "Packets of the STAMP train lost / sent, per direction, in the latest round"),
    ("bridgemon_stamp_jitter_seconds", "gauge",
     "RFC 3550 interarrival jitter of the STAMP train, per direction"),
    ("bridgemon_stamp_delay_seconds", "gauge",
     "Round-trip delay of the STAMP train's packets: min, avg, p95, max"),
    ("bridgemon_stamp_rate_bits_per_second", "gauge",
     "Rate of the STAMP train that got through, per direction, on the wire"),
    ("bridgemon_stamp_mos", "gauge",
     "Video score of the STAMP train (ITU-T G.1070, 1-5), the worse direction's"),
    ("bridgemon_path_mtu_bytes", "gauge",
     "Path MTU: the size a router reported or the search bracketed, or the size tested "
     "when it passed (the path carries at least that)"),
)

# The per-site families, in exposition order: (name, type, help).
SITE_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("bridgemon_site_info", "gauge",
     "Site metadata: name, level, parent, address, contact and free labels (value 1)"),
    ("bridgemon_site_up", "gauge", "1 if the site's latest ICMP burst got a reply"),
    ("bridgemon_site_ready", "gauge",
     "1 if the site can join a conference (verdict ready or degraded)"),
    ("bridgemon_site_state", "gauge", "The site's verdict, one-hot over the states"),
    ("bridgemon_site_problem", "gauge",
     "What keeps the site from ready: one series per reason code, labelled with its severity"),
    ("bridgemon_icmp_rtt_seconds", "gauge", "ICMP round-trip time over the window"),
    ("bridgemon_icmp_jitter_seconds", "gauge",
     "Mean absolute difference of consecutive RTTs over the window (mtr's Javg)"),
    ("bridgemon_icmp_loss_ratio", "gauge", "Echoes lost / sent over the window"),
    ("bridgemon_site_mos", "gauge", "Mean opinion score from the simplified E-model (1-4.5)"),
    ("bridgemon_last_probe_timestamp_seconds", "gauge",
     "When the site was last probed (Unix time)"),
    ("bridgemon_icmp_echoes_sent", "counter", "Echo requests sent to the site"),
    ("bridgemon_icmp_echoes_received", "counter", "Echo replies received from the site"),
    ("bridgemon_check_up", "gauge",
     "1 if the check passed in the latest round (icmp: any reply)"),
    ("bridgemon_check_duration_seconds", "gauge", "How long the check took in the latest round"),
    ("bridgemon_sip_status_code", "gauge",
     "Final status code of the latest SIP OPTIONS (0: none)"),
    ("bridgemon_tls_cert_expiry_timestamp_seconds", "gauge",
     "When the site's TLS certificate expires (Unix time)"),
    *PATH_FAMILIES,
)


class _Empty(Collector):
    """A family with no samples, for its HELP/TYPE lines. (At module level: mypyc, which
    compiles this module, takes no class defined inside a function.)"""

    def __init__(self, name: str, kind: str, text: str) -> None:
        self.family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
            name, text, labels=["site"]
        )

    def collect(self) -> Iterator[Metric]:
        yield self.family


def _family_headers() -> tuple[bytes, ...]:
    """HELP/TYPE lines exactly as prometheus_client writes them (names, escaping)."""

    headers = []
    for name, kind, text in SITE_FAMILIES:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Empty(name, kind, text))
        headers.append(generate_latest(registry))
    return tuple(headers)


_HEADERS = _family_headers()


_INF = math.inf


def _num(value: float) -> str:
    """A sample value as Prometheus reads it; repr is exact and fast for finite floats."""
    if value.__class__ is float and -_INF < value < _INF:
        return repr(value)
    number = float(value)
    if math.isfinite(number):
        return repr(number)
    return "NaN" if math.isnan(number) else ("+Inf" if number > 0 else "-Inf")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def info_series(site: Site, extra: Sequence[str], labels: str = "") -> bytes:
    """The site's ``bridgemon_site_info`` line; ``extra`` is every free-label key in use,
    ``labels`` the vantage's prefix (``vantage_labels``)."""
    contact = site.contact
    values = (
        site.id, site.name, site.level, site.parent or "", site.address, site.profile,
        (contact.name or "") if contact else "", (contact.phone or "") if contact else "",
        *(site.labels.get(key, "") for key in extra),
    )
    written = labels + ",".join(
        f'{key}="{_escape(value)}"' for key, value in zip((*INFO_LABELS, *extra), values,
                                                          strict=True)
    )
    return f"bridgemon_site_info{{{written}}} 1.0\n".encode()


# Line templates, the site's labels written in place of "\0" (a character no escaped label
# value holds) by one str.replace: a site's lines are rebuilt every round, and formatting
# each label and value separately cost more than judging the site.
_HOLE = "\0"
_STATE_LINES = {
    state: "".join(f'bridgemon_site_state{{{_HOLE},state="{name.value}"}} '
                   f"{'1.0' if name == state else '0.0'}\n" for name in STATES)
    for state in STATES
}
_READY_LINES = {
    True: f"bridgemon_site_ready{{{_HOLE}}} 1.0\n",
    False: f"bridgemon_site_ready{{{_HOLE}}} 0.0\n",
}
_UP_LINES = {
    True: f"bridgemon_site_up{{{_HOLE}}} 1.0\n",
    False: f"bridgemon_site_up{{{_HOLE}}} 0.0\n",
    None: "",
}
_RTT_LINES = (
    f'bridgemon_icmp_rtt_seconds{{{_HOLE},stat="min"}} %s\n'
    f'bridgemon_icmp_rtt_seconds{{{_HOLE},stat="avg"}} %s\n'
    f'bridgemon_icmp_rtt_seconds{{{_HOLE},stat="max"}} %s\n'
    f'bridgemon_icmp_rtt_seconds{{{_HOLE},stat="p95"}} %s\n'
)
_JITTER_LINE = f"bridgemon_icmp_jitter_seconds{{{_HOLE}}} %s\n"
_LOSS_LINE = f"bridgemon_icmp_loss_ratio{{{_HOLE}}} %s\n"
_MOS_LINE = f"bridgemon_site_mos{{{_HOLE}}} %s\n"
_LAST_LINE = f"bridgemon_last_probe_timestamp_seconds{{{_HOLE}}} %s\n"
_ECHO_LINES = (f"bridgemon_icmp_echoes_sent_total{{{_HOLE}}} %s\n",
               f"bridgemon_icmp_echoes_received_total{{{_HOLE}}} %s\n")


def site_label(site_id: str, labels: str = "") -> bytes:
    """The labels every line of a site leads with: the vantage's prefix (``labels``,
    ``vantage_labels``) and ``site``. Kept by the board for the site's lifetime."""
    return f'{labels}site="{_escape(site_id)}"'.encode()


# The lines of a site probed by ICMP alone (the national inventory: every commune), as
# bytes templates its label and figures are written into by one ``%`` each. Figures are
# written to the precision they were measured with, not by repr: repr of a mean of RTTs
# (17 digits) took 1.3 µs here, "%.9g" 0.27. Nine significant digits keep every digit of
# a time the kernel stamped in nanoseconds (an RTT, its min and max exactly), "%.6f" the
# microseconds of a Unix time, "%.6g" a score out of 4.5; a count or a ratio (1/3) is a
# float's repr (mostly 0.0, which repr writes fast).
_SECONDS = b"%.9g"
_UNIX_TIME = b"%.6f"
_SCORE = b"%.6g"


def _figure(form: bytes, value: float) -> str:
    """``value`` written with ``form`` (``_SECONDS``...), as ``_num`` if not finite."""
    return (form % value).decode() if -_INF < value < _INF else _num(value)

_UP_BYTES = {True: b"bridgemon_site_up{%s} 1.0\n", False: b"bridgemon_site_up{%s} 0.0\n"}
_READY_BYTES = {True: b"bridgemon_site_ready{%s} 1.0\n",
                False: b"bridgemon_site_ready{%s} 0.0\n"}
_STATE_BYTES = {state: text.replace(_HOLE, "%s").encode() for state, text in _STATE_LINES.items()}
_STATE_HOLES = len(STATES)
_RTT_BYTES = _RTT_LINES.replace(_HOLE, "%s").encode().replace(b" %s\n", b" " + _SECONDS + b"\n")
_JITTER_BYTES = b"bridgemon_icmp_jitter_seconds{%s} " + _SECONDS + b"\n"
_LOSS_BYTES = b"bridgemon_icmp_loss_ratio{%s} %a\n"  # a ratio (1/3): exact, by repr
_MOS_BYTES = b"bridgemon_site_mos{%s} " + _SCORE + b"\n"
_LAST_BYTES = b"bridgemon_last_probe_timestamp_seconds{%s} " + _UNIX_TIME + b"\n"
_SENT_BYTES = b"bridgemon_icmp_echoes_sent_total{%s} %d.0\n"  # as repr(float(count))
_RECEIVED_BYTES = b"bridgemon_icmp_echoes_received_total{%s} %d.0\n"
_ICMP_UP_BYTES = {True: b'bridgemon_check_up{%s,check="icmp"} 1.0\n',
                  False: b'bridgemon_check_up{%s,check="icmp"} 0.0\n'}
_ICMP_DURATION_BYTES = (b'bridgemon_check_duration_seconds{%s,check="icmp"} ' + _SECONDS
                        + b"\n")
_PROBLEM_BYTES = b'bridgemon_site_problem{%s,problem="%s",severity="%s"} 1.0\n'
_NO_PATH = (b"",) * len(PATH_FAMILIES)


def site_series(
    label: bytes, info: bytes, verdict: Verdict, latest: Sequence[ProbeResult],
    echoes: tuple[int, int] | None,
) -> tuple[bytes, ...]:
    """Every per-site line, grouped by family (``SITE_FAMILIES`` order), each led by
    ``label`` (``site_label``).

    Called once per site per round, when the verdict changes, so a scrape only joins. A
    site probed by ICMP alone (the bulk of a national inventory) is written from bytes
    templates, one ``%`` per family: 5 µs a site here, where formatting each line took 38.
    """
    quality = verdict.quality
    stats = quality.rtt if quality is not None else None
    icmp = latest[0] if len(latest) == 1 else None
    if (
        verdict.up is not None and verdict.last_probe is not None and echoes is not None
        and quality is not None and quality.sent and stats is not None
        and quality.jitter is not None and quality.mos is not None
        and icmp is not None and icmp.kind == "icmp" and icmp.check == "icmp"
        and not icmp.details
        # every figure finite (NaN or an infinity fails the comparison), as "%g" writes
        # them otherwise ("inf", not Prometheus's "+Inf")
        and -_INF < (stats.min + stats.avg + stats.max + stats.p95 + quality.jitter
                     + quality.loss_ratio + quality.mos + verdict.last_probe
                     + icmp.duration) < _INF
    ):
        problem = b"".join(
            _PROBLEM_BYTES % (label, _escape(reason.code).encode(),
                              reason.severity.value.encode())
            for reason in verdict.reasons
        ) if verdict.reasons else b""
        return (
            info,
            _UP_BYTES[verdict.up] % label,
            _READY_BYTES[verdict.ready] % label,
            _STATE_BYTES[verdict.state] % ((label,) * _STATE_HOLES),
            problem,
            _RTT_BYTES % (label, stats.min, label, stats.avg, label, stats.max, label,
                          stats.p95),
            _JITTER_BYTES % (label, quality.jitter),
            _LOSS_BYTES % (label, quality.loss_ratio),
            _MOS_BYTES % (label, quality.mos),
            _LAST_BYTES % (label, verdict.last_probe),
            _SENT_BYTES % (label, echoes[0]),
            _RECEIVED_BYTES % (label, echoes[1]),
            _ICMP_UP_BYTES[icmp.ok] % label,
            _ICMP_DURATION_BYTES % (label, icmp.duration),
            b"", b"",  # no SIP, no TLS
            *_NO_PATH,
        )
    return _any_site_series(label.decode(), info, verdict, latest, echoes)


def _any_site_series(
    site: str, info: bytes, verdict: Verdict, latest: Sequence[ProbeResult],
    echoes: tuple[int, int] | None,
) -> tuple[bytes, ...]:
    """``site_series`` of any site, ``site`` its label (``site_label``, as text)."""
    num = _num
    rtt = jitter = loss = mos = last = sent = received = ""
    problem = "".join(
        f'bridgemon_site_problem{{{site},problem="{_escape(reason.code)}",'
        f'severity="{reason.severity.value}"}} 1.0\n'
        for reason in verdict.reasons
    )
    if verdict.last_probe is not None:
        last = _LAST_LINE % _figure(_UNIX_TIME, verdict.last_probe)
    quality = verdict.quality
    if quality is not None and quality.sent:
        loss = _LOSS_LINE % num(quality.loss_ratio)
        stats = quality.rtt
        if stats is not None:
            rtt = _RTT_LINES % tuple(_figure(_SECONDS, value)
                                     for value in (stats.min, stats.avg, stats.max, stats.p95))
        if quality.jitter is not None:
            jitter = _JITTER_LINE % _figure(_SECONDS, quality.jitter)
        if quality.mos is not None:
            mos = _MOS_LINE % _figure(_SCORE, quality.mos)
    if echoes is not None:
        sent = _ECHO_LINES[0] % num(echoes[0])
        received = _ECHO_LINES[1] % num(echoes[1])
    check_up, duration, sip_code, expiry = _check_series(site, latest)
    return (info, *(
        part.replace(_HOLE, site).encode() for part in (
            _UP_LINES[verdict.up], _READY_LINES[verdict.ready], _STATE_LINES[verdict.state],
        )
    ), problem.encode(), *(
        part.replace(_HOLE, site).encode() for part in (rtt, jitter, loss, mos, last, sent,
                                                          received)
    ), *(part.encode() for part in (check_up, duration, sip_code, expiry,
                                   *_path_series(site, latest))))


def _check_series(site: str, latest: Sequence[ProbeResult]) -> tuple[str, str, str, str]:
    num = _num
    up: list[str] = []
    duration: list[str] = []
    sip_code: list[str] = []
    expiry: list[str] = []
    transports: set[str] = set()
    for result in latest:
        labels = f'{site},check="{_escape(result.check)}"'
        up.append(f"bridgemon_check_up{{{labels}}} {'1.0' if result.ok else '0.0'}\n")
        duration.append(f"bridgemon_check_duration_seconds{{{labels}}} "
                        f"{_figure(_SECONDS, result.duration)}\n")
        details = result.details
        if result.kind == "sip":
            transport = str(details.get("transport", ""))
            if transport not in transports:  # one series per transport
                transports.add(transport)
                code = details.get("status_code") or 0
                sip_code.append(f'bridgemon_sip_status_code{{{site},transport="'
                                f'{_escape(transport)}"}} {num(code)}\n')
        not_after = details.get("cert_not_after")
        if isinstance(not_after, int | float):
            expiry.append(
                f"bridgemon_tls_cert_expiry_timestamp_seconds{{{labels}}} {num(not_after)}\n"
            )
    return "".join(up), "".join(duration), "".join(sip_code), "".join(expiry)


def _path_series(site: str, latest: Sequence[ProbeResult]) -> tuple[str, ...]:
    """The ``PATH_FAMILIES`` lines of the round's stamp and mtu checks."""
    lines: tuple[list[str], ...] = tuple([] for _ in PATH_FAMILIES)
    for result in latest:
        if result.kind not in ("stamp", "mtu"):
            continue
        labels = f'{site},check="{_escape(result.check)}"'
        for index, extra, value in path_figures(result.kind, result.ok, result.details):
            more = "".join(f',{key}="{label}"' for key, label in extra)
            lines[index].append(f"{PATH_FAMILIES[index][0]}{{{labels}{more}}} {_num(value)}\n")
    return tuple("".join(family) for family in lines)


def path_figures(
    kind: str, ok: bool, details: Mapping[str, Any]
) -> list[tuple[int, tuple[tuple[str, str], ...], float]]:
    """(index in ``PATH_FAMILIES``, labels beyond site and check, value) of one stamp or mtu
    check, from its details (stamp.result.TrainResult.to_dict, stamp.pmtu.PmtuResult's;
    the same keys in a test-run report's check): base units, ms turned to seconds."""
    out: list[tuple[int, tuple[tuple[str, str], ...], float]] = []
    if kind == "mtu":
        size = details.get("packet_size") if ok else details.get("mtu")
        if isinstance(size, int | float):
            out.append((5, (), float(size)))
        return out
    trip = details.get("round_trip")
    if kind != "stamp" or not isinstance(trip, Mapping):
        return out  # no answer at all: the check's failure says it
    known = [(name, details[name]) for name in ("downlink", "uplink")
             if isinstance(details.get(name), Mapping)
             and details[name].get("loss_ratio") is not None]
    for name, stats in known or [("round_trip", trip)]:
        out.append((0, (("direction", name),), float(stats["loss_ratio"])))
        if stats.get("jitter_ms") is not None:
            out.append((1, (("direction", name),), stats["jitter_ms"] / 1000))
    rtt = trip.get("rtt_ms")
    if isinstance(rtt, Mapping):
        out.extend((2, (("stat", stat),), rtt[stat] / 1000) for stat in ("min", "avg", "p95",
                                                                         "max"))
    for name in ("downlink", "uplink"):
        stats = details.get(name)
        if isinstance(stats, Mapping) and stats.get("carried_bps") is not None:
            out.append((3, (("direction", name),), float(stats["carried_bps"])))
    if details.get("mos") is not None:
        out.append((4, (), float(details["mos"])))
    return out


def _testrun_path_metrics(snap: Snapshot) -> Iterator[Metric]:
    """``PATH_FAMILIES`` as ``bridgemon_testrun_…{event, site, check, …}`` from each event's
    latest test run (trains and MTU checks run there by default): only for the events and
    sites ``_event_metrics`` shows, and only when such checks ran."""
    families = [
        GaugeMetricFamily(name.replace("bridgemon_", "bridgemon_testrun_", 1),
                          f"{text}, in the event's latest test run",
                          labels=["event", "site", "check", *extra])
        for (name, _, text), extra in zip(PATH_FAMILIES, _PATH_LABELS, strict=True)
    ]
    latest = snap.latest_runs or {}
    exported = snap.exported_ids
    for event in snap.events:
        report = latest.get(event.id)
        if report is None or event.end.timestamp() < snap.taken_at - snap.event_window \
                or event.start.timestamp() > snap.taken_at + snap.event_window:
            continue
        for site in report["sites"]:
            if site["id"] not in exported:
                continue
            for check in site["checks"]:
                kind = check.get("type")
                if kind not in ("stamp", "mtu"):
                    continue
                name = str(check.get("name") or kind)
                for index, extra, value in path_figures(kind, bool(check.get("ok")), check):
                    families[index].add_metric(
                        [event.id, site["id"], name, *(label for _, label in extra)], value)
    yield from (family for family in families if family.samples)


# The labels each of PATH_FAMILIES has beyond site and check.
_PATH_LABELS: tuple[tuple[str, ...], ...] = (
    ("direction",), ("direction",), ("stat",), ("direction",), (), (),
)


# Sites per piece of a family: a family of 12,000 sites joined at once (4.5 MB of state
# lines) held the loop for 15-20 ms; 500 sites' worth is well under a millisecond to
# gather, and 1-2 ms to compress when it changed (web/gzip_pieces.py).
_SITES_PER_PIECE = 500


def _site_families(snap: Snapshot, order: Sequence[str]) -> Iterator[Piece]:
    """The prepared lines of the sites in ``order``, family after family, a slice of sites
    at a time: no formatting. A piece's slot is (family, first site's position)."""
    sites, step = snap.sites, _SITES_PER_PIECE
    # Each slice of sites is looked up and turned into its families' columns once, with
    # the first family (zip in C): walking the 12,000 sites' tuples again for each of the
    # 22 families was a cache miss per line, 4 % of the daemon's CPU under scraping.
    columns: list[tuple[int, list[tuple[bytes, ...]]]] = []
    yield ("header", 0), (_HEADERS[0],)
    for start in range(0, len(order), step):
        chunk = [sites[site_id].series for site_id in order[start:start + step]
                 if site_id in sites]
        if not chunk:
            continue
        families = list(zip(*chunk, strict=True))
        columns.append((start, families))
        yield (0, start), families[0]
    for index, header in enumerate(_HEADERS[1:], 1):
        yield ("header", index), (header,)
        for start, families in columns:
            yield (index, start), families[index]


def _event_metrics(snap: Snapshot) -> Iterator[Metric]:
    """Events within the window (ended less than ``event_window`` ago, or starting within
    it), their participants and their latest test run: participants × events stays small."""
    start = GaugeMetricFamily(
        "bridgemon_event_start_timestamp_seconds", "When the conference starts (Unix time)",
        labels=["event"],
    )
    end = GaugeMetricFamily(
        "bridgemon_event_end_timestamp_seconds", "When the conference ends (Unix time)",
        labels=["event"],
    )
    info = GaugeMetricFamily(
        "bridgemon_event_info", "Conference metadata (value 1)", labels=["event", "title"]
    )
    participant = GaugeMetricFamily(
        "bridgemon_event_participant", "1 for each site taking part in the conference",
        labels=["event", "site"],
    )
    run_time = GaugeMetricFamily(
        "bridgemon_testrun_timestamp_seconds",
        "When the latest test run of the event finished (Unix time)", labels=["event"],
    )
    site_ready = GaugeMetricFamily(
        "bridgemon_testrun_site_ready",
        "1 if the site could join in the event's latest test run (ready or degraded)",
        labels=["event", "site"],
    )
    counts = GaugeMetricFamily(
        "bridgemon_testrun_sites", "Sites per verdict in the event's latest test run",
        labels=["event", "verdict"],
    )
    latest = snap.latest_runs or {}
    exported = snap.exported_ids
    for event in snap.events:
        starts, ends = event.start.timestamp(), event.end.timestamp()
        if ends < snap.taken_at - snap.event_window or starts > snap.taken_at + snap.event_window:
            continue
        start.add_metric([event.id], starts)
        end.add_metric([event.id], ends)
        info.add_metric([event.id, event.title], 1)
        for site_id in event.participants:
            if site_id in exported:
                participant.add_metric([event.id, site_id], 1)
        report = latest.get(event.id)
        if report is None:
            continue
        finished = report.get("finished_at") or report["started_at"]
        run_time.add_metric([event.id], datetime.fromisoformat(finished).timestamp())
        for site in report["sites"]:
            if site["id"] in exported:
                ok = can_join(site["verdict"])
                site_ready.add_metric([event.id, site["id"]], 1 if ok else 0)
        # A latest run is a complete one, whose summary the run wrote.
        summary = report["summary"] or count(site["verdict"] for site in report["sites"])
        for verdict, number in in_order(summary):
            counts.add_metric([event.id, verdict.value], number)
    yield from (start, end, info, participant, run_time, site_ready, counts)
