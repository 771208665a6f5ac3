"""Prometheus exposition: a custom collector that renders one Snapshot per scrape.

Series exist only for sites in the current inventory, so sites removed by a reload vanish
at the next scrape. Names follow DESIGN.md: prefix ``bridgemon_``, base units, the site id
in ``site``; human names, levels and parents only in ``bridgemon_site_info``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridgemon import __version__
from bridgemon.durations import format_duration
from bridgemon.readiness import STATES
from bridgemon.snapshot import Snapshot

INFO_LABELS = ("site", "name", "level", "parent", "address", "profile", "contact", "phone")


class BridgemonCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _self_metrics(snap)
        yield from _site_metrics(snap)
        yield from _event_metrics(snap)


def render(snapshot: Snapshot) -> bytes:
    """The text exposition of one snapshot (safe to call off the event loop)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgemonCollector(lambda: snapshot))
    return generate_latest(registry)


def _self_metrics(snap: Snapshot) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "bridgemon_build_info", "bridgemon version and Python it runs on",
        labels=["version", "python"],
    )
    build.add_metric([__version__, platform.python_version()], 1)
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
    sites = GaugeMetricFamily(
        "bridgemon_config_sites", "Sites in the running inventory, per level", labels=["level"]
    )
    levels = GaugeMetricFamily(
        "bridgemon_level_info", "Levels of the site tree, top first (depth 0)",
        labels=["level", "name", "depth"],
    )
    for depth, level in enumerate(snap.inventory.levels):
        count = sum(1 for s in snap.inventory.sites.values() if s.level == level.id)
        sites.add_metric([level.id], count)
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
    mode = GaugeMetricFamily(
        "bridgemon_pinger_socket_info", "ICMP socket kind per address family (raw or dgram)",
        labels=["family", "mode"],
    )
    for family, kind in sorted(pinger.modes.items()):
        mode.add_metric([family, kind], 1)
    yield mode


def _site_metrics(snap: Snapshot) -> Iterator[Metric]:
    inventory = snap.inventory
    extra = sorted({key for site in inventory.sites.values() for key in site.labels})
    info = GaugeMetricFamily(
        "bridgemon_site_info",
        "Site metadata: name, level, parent, address, contact and free labels (value 1)",
        labels=[*INFO_LABELS, *extra],
    )
    up = GaugeMetricFamily(
        "bridgemon_site_up", "1 if the site's latest ICMP burst got a reply", labels=["site"]
    )
    ready = GaugeMetricFamily(
        "bridgemon_site_ready",
        "1 if the site can join a conference (verdict ready or degraded)",
        labels=["site"],
    )
    state = GaugeMetricFamily(
        "bridgemon_site_state", "The site's verdict, one-hot over the states",
        labels=["site", "state"],
    )
    problem = GaugeMetricFamily(
        "bridgemon_site_problem",
        "What keeps the site from ready: one series per reason code, labelled with its severity",
        labels=["site", "problem", "severity"],
    )
    rtt = GaugeMetricFamily(
        "bridgemon_icmp_rtt_seconds", "ICMP round-trip time over the window",
        labels=["site", "stat"],
    )
    jitter = GaugeMetricFamily(
        "bridgemon_icmp_jitter_seconds",
        "Mean absolute difference of consecutive RTTs over the window (mtr's Javg)",
        labels=["site"],
    )
    loss = GaugeMetricFamily(
        "bridgemon_icmp_loss_ratio", "Echoes lost / sent over the window", labels=["site"]
    )
    mos = GaugeMetricFamily(
        "bridgemon_site_mos", "Mean opinion score from the simplified E-model (1-4.5)",
        labels=["site"],
    )
    last = GaugeMetricFamily(
        "bridgemon_last_probe_timestamp_seconds", "When the site was last probed (Unix time)",
        labels=["site"],
    )
    sent = CounterMetricFamily(
        "bridgemon_icmp_echoes_sent", "Echo requests sent to the site", labels=["site"]
    )
    received = CounterMetricFamily(
        "bridgemon_icmp_echoes_received", "Echo replies received from the site", labels=["site"]
    )
    for site, _depth in inventory.walk():
        contact = site.contact
        info.add_metric(
            [
                site.id, site.name, site.level, site.parent or "", site.address, site.profile,
                (contact.name or "") if contact else "", (contact.phone or "") if contact else "",
                *(site.labels.get(key, "") for key in extra),
            ],
            1,
        )
        verdict = snap.verdicts.get(site.id)
        if verdict is None:
            continue
        labels = [site.id]
        ready.add_metric(labels, 1 if verdict.ready else 0)
        for name in STATES:
            state.add_metric([site.id, name.value], 1 if verdict.state == name else 0)
        for reason in verdict.reasons:
            problem.add_metric([site.id, reason.code, reason.severity.value], 1)
        if verdict.up is not None:
            up.add_metric(labels, 1 if verdict.up else 0)
        if verdict.last_probe is not None:
            last.add_metric(labels, verdict.last_probe)
        quality = verdict.quality
        if quality is not None and quality.sent:
            loss.add_metric(labels, quality.loss_ratio)
            if quality.rtt is not None:
                for stat in ("min", "avg", "max", "p95"):
                    rtt.add_metric([site.id, stat], getattr(quality.rtt, stat))
            if quality.jitter is not None:
                jitter.add_metric(labels, quality.jitter)
            if quality.mos is not None:
                mos.add_metric(labels, quality.mos)
        counters = snap.echo_counters.get(site.id)
        if counters is not None:
            sent.add_metric(labels, counters[0])
            received.add_metric(labels, counters[1])
    yield from (info, up, ready, state, problem, rtt, jitter, loss, mos, last, sent, received)
    yield from _check_metrics(snap)


def _check_metrics(snap: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "bridgemon_check_up", "1 if the check passed in the latest round (icmp: any reply)",
        labels=["site", "check"],
    )
    duration = GaugeMetricFamily(
        "bridgemon_check_duration_seconds", "How long the check took in the latest round",
        labels=["site", "check"],
    )
    sip_code = GaugeMetricFamily(
        "bridgemon_sip_status_code", "Final status code of the latest SIP OPTIONS (0: none)",
        labels=["site", "transport"],
    )
    expiry = GaugeMetricFamily(
        "bridgemon_tls_cert_expiry_timestamp_seconds",
        "When the site's TLS certificate expires (Unix time)",
        labels=["site", "check"],
    )
    for site_id, results in snap.latest.items():
        if site_id not in snap.inventory.sites:
            continue
        transports: set[str] = set()
        for result in results:
            labels = [site_id, result.check]
            up.add_metric(labels, 1 if result.ok else 0)
            duration.add_metric(labels, result.duration)
            details = result.details
            if result.kind == "sip":
                transport = str(details.get("transport", ""))
                if transport not in transports:  # one series per transport
                    transports.add(transport)
                    sip_code.add_metric([site_id, transport], details.get("status_code") or 0)
            not_after = details.get("cert_not_after")
            if isinstance(not_after, int | float):
                expiry.add_metric(labels, not_after)
    yield from (up, duration, sip_code, expiry)


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
    for event in snap.events:
        starts, ends = event.start.timestamp(), event.end.timestamp()
        if ends < snap.taken_at - snap.event_window or starts > snap.taken_at + snap.event_window:
            continue
        start.add_metric([event.id], starts)
        end.add_metric([event.id], ends)
        info.add_metric([event.id, event.title], 1)
        for site_id in event.participants:
            if site_id in snap.inventory.sites:
                participant.add_metric([event.id, site_id], 1)
        report = latest.get(event.id)
        if report is None:
            continue
        finished = report.get("finished_at") or report["started_at"]
        run_time.add_metric([event.id], datetime.fromisoformat(finished).timestamp())
        for site in report["sites"]:
            if site["id"] in snap.inventory.sites:
                ok = site["verdict"] in ("ready", "degraded")
                site_ready.add_metric([event.id, site["id"]], 1 if ok else 0)
        for verdict, number in report["summary"].items():
            if verdict != "total":
                counts.add_metric([event.id, verdict], number)
    yield from (start, end, info, participant, run_time, site_ready, counts)
