"""Probe rounds: one APScheduler job per interval, sites paced evenly across the round.

A round takes the sites of its interval, starts their probes spread over
``spread × interval`` (never all at once), keeps at most ``max_concurrency`` sites in
flight, and hands each site's results to ``record`` (the daemon's: its window, then
the site's judgement). A round still running when the next one is due is not doubled:
APScheduler skips the new one (max_instances=1) and we count it as an overrun.

A site whose round is one ICMP burst to an IP address (nearly all of a national
inventory) is started without a task (``probes.site.start_icmp``): measured at 12,000
sites, the task, future and coroutines per site cost a tenth of the daemon's CPU. Every
other site goes through ``probe_site`` in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridgemon.durations import format_duration
from bridgemon.inventory import Inventory, Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import BurstHandle
from bridgemon.probes.result import SiteRound
from bridgemon.probes.site import probe_site, start_icmp

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RoundStats:
    interval: float
    sites: int = 0
    rounds: int = 0
    overruns: int = 0
    last_started: float = 0.0
    last_duration: float = 0.0
    running: bool = False


class _DirectSites:
    """The sites of one round started without a task (``probes.site.start_icmp``: one ICMP
    burst to an IP address, nearly every site at national scale), until each is recorded.

    Each holds a slot of the round's concurrency limit from its start until its round is
    recorded, like a task would. A failure to record one site is logged and costs that
    site's round only.
    """

    def __init__(self, ctx: ProbeContext, record: Callable[[Site, SiteRound], None],
                 limit: asyncio.Semaphore) -> None:
        self._ctx, self._record, self._limit = ctx, record, limit
        self._started: dict[str, BurstHandle] = {}
        self._idle: asyncio.Future[None] | None = None

    def start(self, site: Site) -> bool:
        """Start ``site`` if it can go without a task; False (nothing started) if not."""
        handle = start_icmp(site, self._ctx, lambda site_round: self._done(site, site_round))
        if handle is None:
            return False
        self._started[site.id] = handle
        return True

    def _done(self, site: Site, site_round: SiteRound) -> None:
        if self._started.pop(site.id, None) is None:
            return  # given up already (cancel)
        self._limit.release()
        try:
            self._record(site, site_round)
        except Exception:
            log.exception("recording the round of site %s failed", site.id)
        if not self._started and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def all_recorded(self) -> None:
        if self._started:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def cancel(self) -> None:
        """Give up the sites still out (the round was cancelled); their slots come back."""
        for handle in self._started.values():
            self._ctx.pinger.cancel(handle)
            self._limit.release()
        self._started.clear()


class RoundScheduler:
    def __init__(
        self, record: Callable[[Site, SiteRound], None], ctx: ProbeContext, *,
        max_concurrency: int, spread: float,
    ) -> None:
        self._record = record
        self._ctx = ctx
        self._limit = asyncio.Semaphore(max_concurrency)
        self._spread = spread
        self.stats: dict[float, RoundStats] = {}
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._rounds: set[asyncio.Task[None]] = set()
        # interval -> its sites in inventory order and the longest probe among them, planned
        # at apply(): a round's first step at 12,000 sites then takes no scan of them all.
        self._plans: dict[float, tuple[tuple[Site, ...], float]] = {}

    @staticmethod
    def _job_id(interval: float) -> str:
        return f"round-{format_duration(interval)}"

    def apply(self, inventory: Inventory, *, max_concurrency: int, spread: float) -> None:
        """Plan rounds for this inventory; intervals that stay keep their rhythm."""
        self._spread = spread
        if max_concurrency != self._limit._value:  # only safe to swap between rounds
            self._limit = asyncio.Semaphore(max_concurrency)
        members: dict[float, list[Site]] = {}
        for site in inventory.sites.values():
            members.setdefault(site.interval, []).append(site)
        self._plans = {
            interval: (tuple(sites), max(site.longest_probe for site in sites))
            for interval, sites in members.items()
        }
        counts = {interval: len(sites) for interval, sites in members.items()}
        for interval in list(self.stats):
            if interval not in counts:
                job = self._scheduler.get_job(self._job_id(interval))
                if job is not None:
                    job.remove()
                del self.stats[interval]
        for interval, count in sorted(counts.items()):
            stats = self.stats.get(interval)
            if stats is None:
                stats = self.stats[interval] = RoundStats(interval)
                self._scheduler.add_job(
                    self._round,
                    IntervalTrigger(seconds=interval),
                    args=[interval],
                    id=self._job_id(interval),
                    name=f"probe round every {format_duration(interval)}",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(interval // 2)),
                    next_run_time=datetime.now(UTC),
                )
            stats.sites = count

    def replace_date_jobs(
        self,
        prefix: str,
        jobs: Sequence[tuple[str, datetime, Callable[..., Awaitable[None]], tuple[Any, ...]]],
    ) -> None:
        """Swap every one-off job whose id starts with ``prefix`` for ``jobs``."""
        for job in self._scheduler.get_jobs():
            if job.id.startswith(prefix):
                job.remove()
        for job_id, when, func, args in jobs:
            self._scheduler.add_job(
                func, DateTrigger(run_date=when), args=list(args), id=job_id,
                name=job_id, misfire_grace_time=300, coalesce=True,
            )

    def planned(self, prefix: str) -> list[tuple[str, datetime]]:
        """(job id, next run) of the one-off jobs whose id starts with ``prefix``."""
        return sorted(
            ((job.id, job.next_run_time or job.trigger.run_date)
             for job in self._scheduler.get_jobs() if job.id.startswith(prefix)),
            key=lambda item: item[1],
        )

    def start(self) -> None:
        self._scheduler.start()

    async def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in list(self._rounds):
            task.cancel()
        if self._rounds:
            await asyncio.gather(*self._rounds, return_exceptions=True)

    def _on_skipped(self, event: JobEvent) -> None:
        for stats in self.stats.values():
            if self._job_id(stats.interval) == event.job_id:
                stats.overruns += 1
                log.warning(
                    "probe round every %s overran: the previous round is still running "
                    "(%d sites); skipped this one",
                    format_duration(stats.interval),
                    stats.sites,
                )

    async def _round(self, interval: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._rounds.add(task)
        try:
            await self.run_round(interval)
        except asyncio.CancelledError:
            log.debug("probe round every %s cancelled", format_duration(interval))
        finally:
            self._rounds.discard(task)

    async def run_round(self, interval: float) -> None:
        stats = self.stats.get(interval)
        plan = self._plans.get(interval)
        if stats is None or plan is None:
            return
        sites, longest = plan
        loop = asyncio.get_running_loop()
        begun = loop.time()
        stats.running = True
        stats.last_started = time.time()
        # Start every site within the spread, and early enough that its burst ends before
        # the next round is due.
        tick = self._ctx.pinger.tick
        window = max(0.0, min(interval * self._spread, interval - longest - 2 * tick))
        step = window / max(len(sites), 1)
        in_flight: set[asyncio.Task[None]] = set()
        direct = _DirectSites(self._ctx, self._record, self._limit)
        limit = self._limit
        try:
            for index, site in enumerate(sites):
                due = begun + index * step
                if due > loop.time():
                    # Wake on the pinger's tick grid, so launching sites shares the wake-up
                    # in which the pinger sends and reads anyway.
                    await asyncio.sleep(math.ceil(due / tick) * tick - loop.time())
                await limit.acquire()
                if direct.start(site):
                    continue
                task = asyncio.ensure_future(self._probe_and_record(site, limit))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)
            await direct.all_recorded()
        finally:
            for task in in_flight:
                task.cancel()
            direct.cancel()
            stats.running = False
            stats.rounds += 1
            stats.last_duration = loop.time() - begun

    async def _probe_and_record(self, site: Site, limit: asyncio.Semaphore) -> None:
        try:
            site_round = await probe_site(site, self._ctx)
            self._record(site, site_round)
        finally:
            limit.release()
