"""Pre-event connection test runs: an intensive probe of chosen sites and its report.

A test run probes every selected site once with a long burst (default 50 echoes 100 ms
apart) and all its service checks, judges it with the same readiness functions as the
daemon, and produces the report dict (docs/testrun.schema.json). Each site's result is
handed to ``on_site`` (progress, and the history store) the moment it is final, so a run killed
midway keeps everything it finished.

The parents of selected sites are probed too, when they are not selected themselves:
without them a dead district's communes would read "not ready" instead of "parent down".
They do not appear in the report.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bridgemon import verdicts
from bridgemon.events import ZONE, Event
from bridgemon.inventory import Inventory, Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.result import SiteRound
from bridgemon.probes.site import probe_site
from bridgemon.readiness import Verdict, judge_own, judge_under
from bridgemon.specs import IcmpSpec
from bridgemon.views import check_json


@dataclass(frozen=True)
class TestPlan:
    run_id: str
    sites: tuple[Site, ...]  # the selected sites, tree order
    context: tuple[Site, ...]  # unselected parents probed only to judge parent_down
    event: Event | None
    selector: str | None
    count: int
    spacing: float
    timeout: float
    concurrency: int
    trigger: str  # cli | schedule | api
    operator: str

    def header(self, started_at: float) -> dict[str, Any]:
        """The report without its sites: what the history stores at the start."""
        return {
            "run_id": self.run_id,
            "started_at": iso(started_at),
            "finished_at": None,
            "status": "running",
            "event": self.event.id if self.event else None,
            "event_title": self.event.title if self.event else None,
            "event_start": self.event.start.isoformat() if self.event else None,
            "selector": self.selector,
            "trigger": self.trigger,
            "operator": self.operator,
            "count": self.count,
            "spacing_ms": round(self.spacing * 1000, 3),
            "summary": {**verdicts.count(()), "total": len(self.sites)},
        }


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, ZONE).isoformat(timespec="seconds")


def new_run_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now or time.time(), ZONE).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{os.urandom(2).hex()}"


def default_operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def plan_test(
    inventory: Inventory,
    *,
    selector: str | None = None,
    event: Event | None = None,
    count: int,
    spacing: float,
    timeout: float,
    concurrency: int,
    trigger: str,
    operator: str,
) -> TestPlan:
    """Choose the sites; raises SelectorError for a selector the inventory can't satisfy."""
    if event is not None:
        wanted = set(event.participants)
        chosen = [site for site, _ in inventory.walk() if site.id in wanted]
        selector = event.selector
        count = event.count or count
    else:
        chosen = inventory.select(selector or "*")
    chosen_ids = {site.id for site in chosen}
    context: dict[str, Site] = {}
    for site in chosen:
        for ancestor in inventory.ancestors(site.id):
            if ancestor.id not in chosen_ids:
                context[ancestor.id] = ancestor
    return TestPlan(
        run_id=new_run_id(),
        sites=tuple(chosen),
        context=tuple(context.values()),
        event=event,
        selector=selector,
        count=count,
        spacing=spacing,
        timeout=timeout,
        concurrency=concurrency,
        trigger=trigger,
        operator=operator,
    )


def site_report(site: Site, inventory: Inventory, verdict: Verdict,
                site_round: SiteRound) -> dict[str, Any]:
    parent = inventory.sites.get(site.parent) if site.parent else None
    contact = site.contact
    return {
        "id": site.id,
        "name": site.name,
        "level": site.level,
        "parent": site.parent,
        "parent_name": parent.name if parent else None,
        "address": site.address,
        "verdict": verdict.state.value,
        "reasons": [reason.en for reason in verdict.reasons],
        "reasons_vi": [reason.vi for reason in verdict.reasons],
        "mos": round(verdict.quality.mos, 3)
        if verdict.quality and verdict.quality.mos is not None else None,
        "contact": {"name": contact.name, "phone": contact.phone, "email": contact.email}
        if contact else None,
        "checks": [check_json(result) for result in site_round.results],
    }


async def run_test(
    plan: TestPlan,
    inventory: Inventory,
    ctx: ProbeContext,
    *,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_site: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Probe the plan's sites and return the full report dict."""
    started = time.time()
    header = plan.header(started)
    if on_start is not None:
        on_start(header)
    selected = {site.id for site in plan.sites}
    planned = {site.id: site for site in (*plan.context, *plan.sites)}
    judged: dict[str, Verdict] = {}
    own: dict[str, tuple[Verdict, SiteRound]] = {}
    reports: dict[str, dict[str, Any]] = {}
    limit = asyncio.Semaphore(plan.concurrency)

    def settle(site_id: str) -> None:
        """Judge a probed site once its parent (if probed) is judged; then its children."""
        site = planned[site_id]
        parent_id = site.parent if site.parent in planned else None
        if parent_id is not None and parent_id not in judged:
            return  # the parent will settle us when it is judged
        verdict = judge_under(own[site_id][0], judged.get(parent_id or ""), inventory)
        judged[site_id] = verdict
        if site_id in selected:
            reports[site_id] = site_report(site, inventory, verdict, own[site_id][1])
            if on_site is not None:
                on_site(reports[site_id])
        for child in inventory.children.get(site_id, ()):
            if child in own and child not in judged:
                settle(child)

    async def probe(site: Site) -> None:
        burst = IcmpSpec(count=plan.count, spacing=plan.spacing, timeout=plan.timeout,
                         size=site.icmp.size)
        tested = replace(site, icmp=burst)  # judged with the burst it had, not the round's
        try:
            site_round = await probe_site(tested, ctx)
        finally:
            limit.release()
        own[site.id] = (judge_own(tested, (site_round,), time.time()), site_round)
        settle(site.id)

    # Parents first, so children settle as soon as they finish.
    order = sorted(planned.values(), key=lambda site: len(inventory.ancestors(site.id)))
    tasks: list[asyncio.Task[None]] = []
    try:
        for site in order:
            await limit.acquire()
            tasks.append(asyncio.ensure_future(probe(site)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    sites = [reports[site.id] for site in plan.sites]
    summary = verdicts.count(report["verdict"] for report in sites)
    return {
        **header,
        "finished_at": iso(time.time()),
        "status": "complete",
        "summary": summary,
        "sites": sites,
    }


def all_ready(report: dict[str, Any], *, strict: bool = False) -> bool:
    """True when every site can join: ready (or degraded, unless strict)."""
    allowed = {verdicts.State.READY} if strict else verdicts.CAN_JOIN
    return all(site["verdict"] in allowed for site in report["sites"])
