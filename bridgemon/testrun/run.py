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
from collections import Counter
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
from bridgemon.testrun.history import EncodedSite, History, encode_site
from bridgemon.testrun.plan import TestPlan, iso
from bridgemon.testrun_schema import Report, ReportHeader, SiteReport
from bridgemon.views import check_json

log = logging.getLogger(__name__)

_LAUNCHES_PER_TURN = 8  # sites a run starts probing in one turn of the loop, at most
# A daemon's run stores its judged sites in batches: this many, or what this many seconds
# gathered (a SIGKILL loses at most that; a stop or a failure stores them first).
_BATCH_SITES = 500
_BATCH_SECONDS = 0.5


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
    keep_sites: bool = True,
) -> Report:
    """Probe the plan's sites and return the full report dict.

    ``keep_sites`` False: each site's report goes to ``on_site`` and is not kept, and the
    returned report lists no site (its summary counts them all): for a caller that has
    them stored as they came (the daemon's history). Kept to the end, a national run's
    12,000 raised the daemon's peak memory by 48 MB (229 MB, against 181 MB without)."""
    started = time.time()
    header = plan.header(started)
    if on_start is not None:
        on_start(header)
    selected = {site.id for site in plan.sites}
    planned = {site.id: site for site in (*plan.context, *plan.sites)}
    own: dict[str, tuple[Verdict, SiteRound]] = {}  # probed, not settled yet
    settled: set[str] = set()
    # The verdicts children are judged under: a site with children keeps its own here; a
    # leaf's (most of a national run) goes with its round as soon as it is reported.
    # Kept to the end, 12,000 verdicts took 28 ms of the run's last step to let go.
    parents: dict[str, Verdict] = {}
    reports: dict[str, SiteReport] = {}
    tally: Counter[str] = Counter()  # the summary, counted as sites are reported
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
            if current not in own or (parent_id is not None and parent_id not in settled):
                continue  # settled meanwhile, or its parent will settle it when judged
            own_verdict, site_round = own.pop(current)
            verdict = judge_under(own_verdict, parents.get(parent_id or ""), inventory)
            settled.add(current)
            children = inventory.children.get(current, ())
            if children:
                parents[current] = verdict
            if current in selected:
                report = site_report(site, inventory, verdict, site_round)
                if keep_sites:
                    reports[current] = report
                tally[verdict.state.value] += 1
                if on_site is not None:
                    on_site(report)
                del report
            del site_round, verdict
            stack.extend(child for child in reversed(children) if child in own)
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

    # The probes running, and the end of the run: when every site is launched and the
    # last probe is done, or when one fails. (Not ``gather``: over 12,000 finished tasks it
    # queued a callback each, 11,000 in one turn of the loop, and held them all to the end.)
    running: set[asyncio.Task[None]] = set()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    launched = False

    def probe_done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if ended.done():
            return
        if task.cancelled():
            ended.cancel()
        elif (error := task.exception()) is not None:
            ended.set_exception(error)
        elif launched and not running:
            ended.set_result(None)

    async def launch() -> None:
        # Parents first, so children settle as soon as they finish. A few launches per
        # turn of the loop: each starts a site's probes in the next turns (its checks'
        # tasks, their sends), and a thousand at once held the loop 55 ms, then turns of
        # 600-700 task steps (50-170 ms) at 12,000 sites.
        nonlocal launched
        depths = inventory.depths
        by_depth: dict[int, list[Site]] = {}  # (sorting 12,000 sites took 5-10 ms at once)
        for index, site in enumerate(planned.values(), 1):
            by_depth.setdefault(depths.get(site.id, 0), []).append(site)
            if index % 1000 == 0:
                await asyncio.sleep(0)
        in_order = (site for depth in sorted(by_depth) for site in by_depth[depth])
        for index, site in enumerate(in_order, 1):
            await limit.acquire()
            if ended.done():  # a probe failed: the run ends with its error
                limit.release()
                break
            task = asyncio.ensure_future(probe(site))
            running.add(task)
            task.add_done_callback(probe_done)
            if index % _LAUNCHES_PER_TURN == 0:
                await asyncio.sleep(0)
        launched = True
        if not running and not ended.done():
            ended.set_result(None)

    try:
        await launch()
        await ended
    finally:
        for task in list(running):
            task.cancel()
        if ended.done() and not ended.cancelled():
            ended.exception()  # (raised above, or the run was cancelled before: retrieved)
    sites: list[SiteReport] = []
    for index, site in enumerate(plan.sites if keep_sites else (), 1):  # (12,000: 8 ms)
        sites.append(reports.pop(site.id))
        if index % 1000 == 0:
            await asyncio.sleep(0)
    return {
        **header,
        "finished_at": iso(time.time()),
        "status": "complete",
        "summary": verdicts.add_up(tally.items()),
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
    keep_sites: bool = True,
) -> Report:
    """Run the plan and keep it in ``history`` as it goes: the header when it begins, each
    site the moment it is judged, the summary when it ends. A run that does not end (an
    exception, a cancellation: Ctrl-C, a daemon stopping) is marked incomplete, with the
    sites it finished. ``history`` None: the run is not stored (``test --no-history``).
    ``keep_sites`` False (with a history): the returned report lists no site, as
    ``run_test``'s; they are in the history.

    ``writer`` None: each write is made here, before the run goes on, and a failing one
    fails the run (``bridgemon test``, whose loop serves nothing else). Given (the
    daemon's one-thread executor): the writes go to it, in order, off the loop, so SQLite
    never stalls the probes, the judged sites in batches (``_BATCH_SITES``, or what
    ``_BATCH_SECONDS`` gathered); a failing one is logged and the run goes on, and only
    the end waits for the store.
    """
    loop = asyncio.get_running_loop()
    begun = False
    batch: list[EncodedSite] = []  # judged sites not handed to the writer yet
    flush_timer: asyncio.TimerHandle | None = None

    def store(write: Callable[..., object], *args: Any) -> None:
        if writer is None:
            write(*args)
        else:
            loop.run_in_executor(writer, write, *args).add_done_callback(_log_store_failure)

    def flush() -> None:
        nonlocal batch, flush_timer
        if flush_timer is not None:
            flush_timer.cancel()
            flush_timer = None
        if batch:
            assert history is not None
            store(history.add_sites, plan.run_id, batch)
            batch = []

    def started(header: ReportHeader) -> None:
        nonlocal begun
        if history is not None:
            store(history.begin, header)
            begun = True

    def judged(site: SiteReport) -> None:
        nonlocal flush_timer
        if history is not None:
            if writer is None:
                history.add_site(plan.run_id, site)
            else:
                # In batches: one transaction per site, 12,000 of them, kept the writer
                # thread (and so the GIL) busy to the end of a national run and after.
                batch.append(encode_site(site))
                if len(batch) >= _BATCH_SITES:
                    flush()
                elif flush_timer is None:
                    flush_timer = loop.call_later(_BATCH_SECONDS, flush)
        if on_site is not None:
            on_site(site)

    try:
        report = await run_test(plan, inventory, ctx, on_start=started, on_site=judged,
                                keep_sites=keep_sites or history is None)
    except BaseException:
        if begun:
            assert history is not None
            flush()  # what was judged is kept
            store(history.abort, plan.run_id)
        raise
    if history is not None:
        flush()
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
