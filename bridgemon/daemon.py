"""The running monitor: wires configuration, pinger, state, scheduler and web together.

Owns the one mutable thing the others share (the current Config) and swaps it whole on
reload: a configuration that fails validation is logged with its PATH:LINE errors and the
old one keeps running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web

from bridgemon.board import Board
from bridgemon.config import Config, ConfigError, load_config
from bridgemon.gc_pacing import GcPacer
from bridgemon.inventory import Site
from bridgemon.loop_lag import LoopLagMeter
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.scheduler import RoundScheduler
from bridgemon.snapshot import PingerFigures, ReloadFigures, RoundFigures, Snapshot
from bridgemon.state import SiteRound, StateStore
from bridgemon.testruns import TestRuns

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    errors: tuple[str, ...]
    sites: int


class Monitor:
    """Everything ``bridgemon run`` does, startable and stoppable from tests."""

    def __init__(self, config: Config, *, listen: tuple[str, int] | None = None) -> None:
        self.config = config
        self.listen = listen or config.monitor.listen
        self.started_at = time.time()
        self.state = StateStore(window=config.monitor.window)
        self.board = Board()
        self.loop_lag = LoopLagMeter()
        self.gc_pacer = GcPacer()
        self._housekeeping: asyncio.Task[None] | None = None
        self._reload = ReloadFigures(True, self.started_at, self.started_at, ())
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.pinger: Pinger | None = None
        self.scheduler: RoundScheduler | None = None
        self.testruns: TestRuns | None = None
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the ICMP sockets (failing loudly without privileges), then probe and serve."""
        from bridgemon.web.app import make_app  # the web layer depends on us, not vice versa

        monitor = self.config.monitor
        self.pinger = Pinger(monitor.icmp_mode)
        mode = self.pinger.check()
        ctx = ProbeContext(pinger=self.pinger, resolve_timeout=monitor.resolve_timeout,
                           sockets=asyncio.Semaphore(monitor.check_sockets))
        self.state.sync(self.config.inventory, monitor.window)
        self.board.sync(self.config.inventory, self.state.sites, time.time())
        self.loop_lag.period = self.pinger.tick
        self.loop_lag.start()
        self._housekeeping = asyncio.ensure_future(self._keep_house())
        self.scheduler = RoundScheduler(
            self.record, ctx, max_concurrency=monitor.max_concurrency, spread=monitor.spread
        )
        self.scheduler.apply(
            self.config.inventory, max_concurrency=monitor.max_concurrency, spread=monitor.spread
        )
        self.testruns = TestRuns(self.config, ctx, self.scheduler)
        self._runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = self.listen
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0] if self._runner.addresses else (host, port)
        self.bound = (str(bound[0]), int(bound[1]))
        self.scheduler.start()
        await self.testruns.start()
        # Everything built so far (inventory, modules) lives as long as the process: keep
        # the collector from walking it on every full collection (see gc_pacing).
        gc.freeze()
        log.info(
            "bridgemon monitoring %d sites from %s (ICMP %s sockets); serving http://%s:%d/metrics",
            len(self.config.inventory), self.config.path, mode, self.bound[0], self.bound[1],
        )

    async def stop(self) -> None:
        self._stopping.set()
        self.loop_lag.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        if self.testruns is not None:
            await self.testruns.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.pinger is not None:
            self.pinger.close()

    async def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self.start()
        try:
            await self._stopping.wait()
            log.info("stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    # -- reload --------------------------------------------------------------------------

    async def reload(self) -> ReloadOutcome:
        async with self._reload_lock:
            now = time.time()
            path = self.config.path
            try:
                new = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                errors = tuple(str(issue) for issue in exc.issues)
                for line in errors:
                    log.error("reload rejected: %s", line)
                kept = len(self.config.inventory)
                log.error("keeping the running configuration (%d sites)", kept)
                self._reload = ReloadFigures(False, now, self._reload.last_success, errors)
                return ReloadOutcome(False, errors, len(self.config.inventory))
            self.apply(new)
            self._reload = ReloadFigures(True, now, now, ())
            log.info("reloaded %s: %d sites", path, len(new.inventory))
            for warning in new.warnings:
                log.warning("%s", warning)
            return ReloadOutcome(True, (), len(new.inventory))

    def apply(self, config: Config) -> None:
        if config.monitor.listen != self.config.monitor.listen:
            log.warning("listen address changes take effect on restart only")
        self.config = config
        self.state.sync(config.inventory, config.monitor.window)
        self.board.sync(config.inventory, self.state.sites, time.time())
        if self.scheduler is not None:
            self.scheduler.apply(
                config.inventory,
                max_concurrency=config.monitor.max_concurrency,
                spread=config.monitor.spread,
            )
        if self.testruns is not None:
            self.testruns.apply(config)

    # -- reading -------------------------------------------------------------------------

    def record(self, site: Site, site_round: SiteRound) -> None:
        """A site's round is done: remember it and judge the site, once, now."""
        if self.state.record(site.id, site.probe_key(), site_round):
            self.board.update(site.id, time.time())

    async def _keep_house(self) -> None:
        """Once a second: verdicts gone stale by time alone, and garbage-collector pacing."""
        while True:
            await asyncio.sleep(1.0)
            self.board.sweep(time.time())
            self.gc_pacer.step()

    def snapshot(self) -> Snapshot:
        pinger = self.pinger
        scheduler = self.scheduler
        return Snapshot(
            taken_at=time.time(),
            started_at=self.started_at,
            inventory=self.board.inventory or self.config.inventory,
            sites=MappingProxyType(dict(self.board.views)),
            order=(self.board.inventory or self.config.inventory).order,
            rounds=tuple(
                RoundFigures(s.interval, s.sites, s.rounds, s.overruns, s.last_started,
                             s.last_duration)
                for s in (scheduler.stats.values() if scheduler else ())
            ),
            pinger=PingerFigures(
                pinger.echoes_sent if pinger else 0,
                pinger.echoes_received if pinger else 0,
                pinger.stray_replies if pinger else 0,
                pinger.modes if pinger else {},
                pinger.receive_drops if pinger else 0,
                pinger.kernel_filtered if pinger else True,
            ),
            reload=self._reload,
            events=self.testruns.events if self.testruns else self.config.events,
            latest_runs=dict(self.testruns.latest) if self.testruns else {},
            event_window=self.config.monitor.event_window,
            loop_lag=self.loop_lag.worst(),
        )
