"""Running a test run: an intensive probe of the planned sites, and its report.

A test run probes every planned site once with a long burst (default 50 echoes 100 ms
apart) and all its service checks, judges it with the same readiness functions as the
daemon, and produces the report (docs/testrun.schema.json, typed in testrun_schema). Each
site's result is handed on (progress, and the history store) the moment it is final, so a
run killed midway keeps everything it finished.

``run_and_store`` is the one way in for ``bridgemon test`` and the daemon alike: the run,
kept in the history as it goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from bridgemon import cooperative, verdicts
from bridgemon.cooperative import Steps
from bridgemon.inventory import Inventory, Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.result import SiteRound
from bridgemon.probes.site import probe_site
from bridgemon.readiness import Verdict, judge_own, judge_under
from bridgemon.specs import IcmpSpec
from bridgemon.testrun.history import History
from bridgemon.testrun.plan import TestPlan, iso
from bridgemon.testrun_schema import Report, ReportHeader, SiteReport
from bridgemon.views import check_json

log = logging.getLogger(__name__)

_LAUNCHES_PER_TURN = 16  # sites a run starts probing in one turn of the loop, at most


def site_report(site: Site, inventory: Inventory, verdict: Verdict,
                site_round: SiteRound) -> SiteReport:
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
    on_start: Callable[[ReportHeader], None] | None = None,
    on_site: Callable[[SiteReport], None] | None = None,
) -> Report:
    """Probe the plan's sites and return the full report dict."""
    started = time.time()
    header = plan.header(started)
    if on_start is not None:
        on_start(header)
    selected = {site.id for site in plan.sites}
    planned = {site.id: site for site in (*plan.context, *plan.sites)}
    judged: dict[str, Verdict] = {}
    own: dict[str, tuple[Verdict, SiteRound]] = {}
    reports: dict[str, SiteReport] = {}
    limit = asyncio.Semaphore(plan.concurrency)

    def settle(site_id: str) -> Steps[None]:
        """Judge a probed site once its parent (if probed) is judged; then its children
        that were probed already, and theirs: pausing after each, as a province judged
        last settles a few hundred sites (10-16 ms at once at 12,000 sites)."""
        stack = [site_id]
        while stack:
            current = stack.pop()
            site = planned[current]
            parent_id = site.parent if site.parent in planned else None
            if current in judged or (parent_id is not None and parent_id not in judged):
                continue  # settled meanwhile, or its parent will settle it when judged
            verdict = judge_under(own[current][0], judged.get(parent_id or ""), inventory)
            judged[current] = verdict
            if current in selected:
                reports[current] = site_report(site, inventory, verdict, own[current][1])
                if on_site is not None:
                    on_site(reports[current])
            stack.extend(child for child in reversed(inventory.children.get(current, ()))
                         if child in own and child not in judged)
            yield

    async def probe(site: Site) -> None:
        burst = IcmpSpec(count=plan.count, spacing=plan.spacing, timeout=plan.timeout,
                         size=site.icmp.size)
        tested = plan.tested(site, burst)  # judged with what it had, not the round's
        try:
            site_round = await probe_site(tested, ctx, trains=True)
        finally:
            limit.release()
        own[site.id] = (judge_own(tested, (site_round,), time.time()), site_round)
        await _paced(settle(site.id))

    async def launch() -> None:
        # Parents first, so children settle as soon as they finish. A few launches per
        # turn of the loop: each starts a site's probes in the next turns (its checks'
        # tasks, their sends), and a thousand at once held the loop 55 ms, then turns of
        # 600-700 task steps (50-170 ms) at 12,000 sites.
        depths = inventory.depths
        for index, site in enumerate(
                sorted(planned.values(), key=lambda site: depths.get(site.id, 0)), 1):
            await limit.acquire()
            tasks.append(asyncio.ensure_future(probe(site)))
            if index % _LAUNCHES_PER_TURN == 0:
                await asyncio.sleep(0)

    tasks: list[asyncio.Task[None]] = []
    try:
        await launch()
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


async def _paced(steps: Steps[None]) -> None:
    """Run ``steps`` here, giving the loop a turn every ``cooperative.BUDGET``. Not
    ``cooperative.run``: a site's settling is mostly one step, and a thousand probes
    waiting for its turns would each add a turn of the loop."""
    clock = time.perf_counter
    until = clock() + cooperative.BUDGET
    for _ in steps:
        if clock() >= until:
            await asyncio.sleep(0)
            until = clock() + cooperative.BUDGET


def all_ready(report: Report, *, strict: bool = False) -> bool:
    """True when every site can join: ready (or degraded, unless strict)."""
    allowed = {verdicts.State.READY} if strict else verdicts.CAN_JOIN
    return all(site["verdict"] in allowed for site in report["sites"])


async def run_and_store(
    plan: TestPlan, inventory: Inventory, ctx: ProbeContext, history: History | None, *,
    writer: Executor | None = None, on_site: Callable[[SiteReport], None] | None = None,
) -> Report:
    """Run the plan and keep it in ``history`` as it goes: the header when it begins, each
    site the moment it is judged, the summary when it ends. A run that does not end (an
    exception, a cancellation: Ctrl-C, a daemon stopping) is marked incomplete, with the
    sites it finished. ``history`` None: the run is not stored (``test --no-history``).

    ``writer`` None: each write is made here, before the run goes on, and a failing one
    fails the run (``bridgemon test``, whose loop serves nothing else). Given (the
    daemon's one-thread executor): the writes go to it, in order, off the loop, so SQLite
    never stalls the probes; a failing one is logged and the run goes on, and only the
    end waits for the store.
    """
    loop = asyncio.get_running_loop()
    begun = False

    def store(write: Callable[..., object], *args: Any) -> None:
        if writer is None:
            write(*args)
        else:
            loop.run_in_executor(writer, write, *args).add_done_callback(_log_store_failure)

    def started(header: ReportHeader) -> None:
        nonlocal begun
        if history is not None:
            store(history.begin, header)
            begun = True

    def judged(site: SiteReport) -> None:
        if history is not None:
            store(history.add_site, plan.run_id, site)
        if on_site is not None:
            on_site(site)

    try:
        report = await run_test(plan, inventory, ctx, on_start=started, on_site=judged)
    except BaseException:
        if begun:
            assert history is not None
            store(history.abort, plan.run_id)
        raise
    if history is not None:
        finished_at, summary = report["finished_at"], report["summary"]
        assert finished_at is not None and summary is not None  # run_test ended the run
        if writer is None:
            history.finish(plan.run_id, finished_at, summary)
        else:
            await loop.run_in_executor(writer, history.finish, plan.run_id, finished_at,
                                       summary)
    return report


def _log_store_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not store a test-run result: %s", future.exception())
