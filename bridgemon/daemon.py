"""The running monitor: wires configuration, pinger, windows, board, scheduler and web together.

Owns the one mutable thing the others share (the current Config) and swaps it whole on
reload, all or nothing: the new windows, board, event plan are built aside first and
swapped in only when every part of them succeeded. A configuration the loader refuses, or
that fails in any other way, is logged and the old one keeps running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bridgemon import compiled, cooperative, gc_pacing, gil, metrics
from bridgemon.board import Board
from bridgemon.config import Config, ConfigError, TlsError, load_config
from bridgemon.cooperative import Steps
from bridgemon.gc_pacing import GcPacer
from bridgemon.inventory import Site
from bridgemon.loop_lag import LoopLagMeter
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.probes.result import SiteRound
from bridgemon.scheduler import RoundScheduler
from bridgemon.shards import Shard, Share, share
from bridgemon.snapshot import (
    HttpFigures,
    PingerFigures,
    ReloadFigures,
    RoundFigures,
    SiteView,
    Snapshot,
)
from bridgemon.testrun.service import TestRuns
from bridgemon.vantage import VantageWatch
from bridgemon.web.actions import ReloadOutcome
from bridgemon.web.app import make_app
from bridgemon.web.serving import HttpLimits, Listener
from bridgemon.windows import SiteWindow, WindowStore

log = logging.getLogger(__name__)

# How long a reload waits before it frees the running board's views (a slice at a time):
# long enough for the requests that read them to be done.
_LET_GO_AFTER = 5.0
# The anchors are probed at least this often (seconds), whatever the probe interval: an
# isolation must be known, and BridgemonVantageIsolated firing, before the site alerts'
# own `for: 1m` runs out.
ANCHORS_EVERY = 5.0


def _load_for_reload(path: Path) -> Config:
    """``load_config``, and the inventory's order and depths (30 ms each at 12,000 sites)
    computed with it in the loader's thread, not on the loop when the board is built."""
    config = load_config(path)
    _ = config.inventory.order, config.inventory.depths
    return config


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


class Monitor:
    """Everything ``bridgemon run`` does, startable and stoppable from tests."""

    def __init__(self, config: Config, *, listen: tuple[str, int] | None = None,
                 http: HttpLimits | None = None, shard: Shard | None = None) -> None:
        self.config = config
        self.http = http or HttpLimits()
        self.listen = listen or config.monitor.listen
        self.started_at = time.time()
        # `run --shard` outlives reloads: the file's shard counts only without it.
        self._shard_override = shard
        # The part of the inventory this daemon probes (all of it unless sharded): windows,
        # board and rounds hold it; test runs take the whole inventory.
        self.share: Share = share(config.inventory, self._shard(config))
        vantage = config.monitor.vantage
        self.vantage = VantageWatch(vantage, str(self.share.shard))
        # Its name is read once, changed on restart only: every board gets its label.
        self._labels = metrics.vantage_labels(vantage.name)
        self.windows = WindowStore(window=config.monitor.window)
        self.board = Board(labels=self._labels)
        self.loop_lag = LoopLagMeter()
        self.gc_pacer = GcPacer()
        self._housekeeping: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._cascading: asyncio.Future[None] | None = None
        self._reload = ReloadFigures(True, self.started_at, self.started_at, ())
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        # While a reload builds its new windows and board a slice at a time, the rounds
        # recorded meanwhile (into the running ones) are kept here to be replayed into them.
        self._replay: deque[tuple[Site, SiteRound]] | None = None
        self.pinger: Pinger | None = None
        self.scheduler: RoundScheduler | None = None
        self.testruns: TestRuns | None = None
        self.listener: Listener | None = None
        self.bound: tuple[str, int] | None = None
        self._reloads: set[asyncio.Task[ReloadOutcome]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # background work (``_background``)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the ICMP sockets (failing loudly without privileges), then probe and serve."""
        gil.share_promptly()  # worker threads must not hold up the engine's loop
        monitor = self.config.monitor
        ctx = ProbeContext.from_settings(monitor)
        self.pinger = ctx.pinger
        mode = self.pinger.check()
        self.windows.sync(self.share.inventory, monitor.window)
        self.board.sync(self.share.inventory, self.windows.sites, time.time())
        self._housekeeping = asyncio.ensure_future(self._keep_house())
        self._watching = asyncio.ensure_future(self._watch_vantage(ctx))
        self.scheduler = RoundScheduler(
            self.record, ctx, max_concurrency=monitor.max_concurrency, spread=monitor.spread
        )
        self.scheduler.apply(
            self.share.inventory, max_concurrency=monitor.max_concurrency, spread=monitor.spread
        )
        self.testruns = TestRuns(self.config, ctx, self.scheduler, lambda: self.share)
        self.listener = Listener(
            make_app(self, self.http, lambda: self.config.web, self.listen), self.http)
        tls = self.config.web.ssl_context()  # read again now: TlsError names the file
        self.bound = await self.listener.start(*self.listen, tls=tls)
        # From here the engine runs: lateness counts (building the board and compiling the
        # pages' templates above is the start, not a stall).
        self.loop_lag.period = self.pinger.tick
        self.loop_lag.start()
        self.scheduler.start()
        await self.testruns.start()
        # Everything built so far (inventory, modules) lives as long as the process: keep
        # the collector from walking it on every full collection (see gc_pacing).
        gc.freeze()
        self.gc_pacer.start()  # and what survives each collection from now on
        log.info(
            "bridgemon (vantage %s, shard %s) monitoring %d of %d sites from %s (ICMP %s "
            "sockets, hot modules %s); serving %s://%s:%d/metrics", self.vantage.settings.name,
            self.share.shard, len(self.share.exported), len(self.config.inventory),
            self.config.path, mode, compiled.REASON, "https" if tls else "http",
            self.bound[0], self.bound[1],
        )

    async def stop(self) -> None:
        self._stopping.set()
        self.loop_lag.stop()
        self.gc_pacer.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._watching is not None:
            self._watching.cancel()
        if self._cascading is not None:
            self._cascading.cancel()
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        if self.testruns is not None:
            await self.testruns.stop()
        for task in (*self._reloads, *self._tasks):
            task.cancel()
        if self.listener is not None:
            await self.listener.close()
        if self.pinger is not None:
            self.pinger.close()

    async def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        await self.start()
        try:
            await self._stopping.wait()
            log.info("stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    # -- reload --------------------------------------------------------------------------

    def _reload_soon(self) -> None:
        """SIGHUP: reload in a task kept (and its outcome read) by us."""
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[ReloadOutcome]) -> None:
        self._reloads.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:  # reload() rejects every failure itself; this is the backstop
            log.error("reload rejected: %s", _one_line(error), exc_info=error)

    async def reload(self) -> ReloadOutcome:
        """Load the file again and switch to it whole, or keep the running configuration:
        whatever fails (the loader's checks, an exception of any kind while loading or while
        building the new windows) rejects the reload; nothing is half-applied."""
        async with self._reload_lock:
            now = time.time()
            path = self.config.path
            try:
                new = await asyncio.to_thread(_load_for_reload, path)
            except ConfigError as exc:
                return self._rejected(now, "load", f"{len(exc.issues)} problem(s) in {path}",
                                      tuple(str(issue) for issue in exc.issues))
            except Exception as exc:  # a loader crash is a rejected file, not a dead task
                log.debug("loading %s failed", path, exc_info=exc)
                return self._rejected(now, "load", f"{path}: cannot load it",
                                      (f"{path}: {_one_line(exc)}",))
            try:
                new.web.ssl_context()  # a renewed certificate checked before anything changes
            except TlsError as exc:
                return self._rejected(now, "load", str(exc), (str(exc),))
            try:
                await self.apply_gradually(new)
            except Exception as exc:
                log.debug("applying %s failed", path, exc_info=exc)
                return self._rejected(now, "apply", f"{path}: cannot apply it",
                                      (f"{path}: {_one_line(exc)}",))
            self._reload = ReloadFigures(True, now, now, ())
            self._renew_tls(new)
            log.info("reloaded %s: %d sites", path, len(new.inventory))
            for warning in new.warnings:
                log.warning("%s", warning)
            return ReloadOutcome(True, (), len(new.inventory))

    def _renew_tls(self, config: Config) -> None:
        """A renewed certificate (same files, new contents) is served from the next
        handshake on; turning TLS on or off moves the listener: a restart."""
        web = config.web
        if self.listener is None:
            return
        if web.tls != self.listener.tls:
            log.warning("TLS on or off takes effect on restart only")
        elif web.tls_cert is not None and web.tls_key is not None:
            try:
                self.listener.renew_tls(web.tls_cert, web.tls_key)
            except (TlsError, OSError) as exc:  # changed since the check: keep the old one
                log.error("the renewed certificate did not load, still serving the old "
                          "one: %s", exc)

    def _rejected(self, now: float, stage: str, summary: str,
                  errors: tuple[str, ...]) -> ReloadOutcome:
        kept = len(self.config.inventory)
        first = errors[0] if len(errors) == 1 else summary
        log.error("reload rejected: %s; keeping the running configuration (%d sites)",
                  first, kept)
        if len(errors) > 1:
            for line in errors:
                log.error("  %s", line)
        self._reload = ReloadFigures(False, now, self._reload.last_success, errors)
        return ReloadOutcome(False, errors, kept, stage)

    def apply(self, config: Config) -> None:
        """Switch to ``config``, all or nothing, in one go (at start, and in tests)."""
        part = share(config.inventory, self._shard(config))
        windows = self._new_windows(
            part, config, {k: dataclasses.replace(v) for k, v in self.windows.sites.items()})
        # each site's "since" goes on if it stays
        board = Board(self.board, labels=self._labels,
                      isolated_since=self.vantage.isolated_since)
        board.sync(part.inventory, windows.sites, time.time())
        self._swap(config, part, windows, board)

    async def apply_gradually(self, config: Config) -> None:
        """``apply`` for a running daemon: the new windows and board are built on the loop
        a slice at a time (``cooperative.run``: judging 12,000 sites takes 1-3 s, which in
        one piece would stall the engine and page as a disturbed measurement), while the
        running ones go on serving. Rounds recorded meanwhile are replayed into the new
        ones before the swap, which happens with no await in between, so none is lost. The
        running board's views are then let go a slice at a time too (``_let_go``)."""
        self._replay = deque()
        try:
            part, windows, board = await cooperative.run(self._build_in_steps(config))
            self._replay_into(windows, board, self._replay)  # the last turn's: a few
            if board.isolated_since != self.vantage.isolated_since:  # rare: in one go
                for _ in board.isolate(self.vantage.isolated_since, len(part.inventory) + 1):
                    pass
            retired = list(self.board.views.values())
            self._swap(config, part, windows, board)
        finally:
            self._replay = None
        self._background(self._let_go(retired))

    def _build_in_steps(self, config: Config) -> Steps[tuple[Share, WindowStore, Board]]:
        """The share, windows and board of ``config``, pausing after every site."""
        assert self._replay is not None
        copied: dict[str, SiteWindow] = {}
        for site_id, window in list(self.windows.sites.items()):
            copied[site_id] = dataclasses.replace(window)
            yield
        part = share(config.inventory, self._shard(config))
        yield
        # (the copies, not the running windows: sync may resize a kept window)
        windows = WindowStore(window=self.windows.window, sites=copied,
                              version=self.windows.version)
        yield from windows.sync_in_steps(part.inventory, config.monitor.window)
        board = Board(self.board, labels=self._labels,
                      isolated_since=self.vantage.isolated_since)
        yield from board.sync_in_steps(part.inventory, windows.sites, time.time(), 1)
        if board.isolated_since != self.vantage.isolated_since:  # changed meanwhile
            yield from board.isolate(self.vantage.isolated_since, 1)
        replay = self._replay
        while replay:  # catch up while rounds keep landing
            self._replay_into(windows, board, (replay.popleft(),))
            yield
        return part, windows, board

    async def _let_go(self, views: list[SiteView]) -> None:
        """Free a replaced board's views a slice at a time, once the requests that read
        them are done: dropped at once, 12,000 views (their lines, rows and verdicts, some
        300,000 objects) took 60 ms of the loop to free."""
        await asyncio.sleep(_LET_GO_AFTER)

        def steps() -> Steps[None]:
            while views:
                views.pop()
                yield

        await cooperative.run(steps())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shard(self, config: Config) -> Shard:
        return self._shard_override or config.monitor.shard

    def _new_windows(self, part: Share, config: Config,
                     copies: dict[str, SiteWindow]) -> WindowStore:
        """The windows for ``config``'s share, from copies of the running ones: sync may
        resize a kept window, which the running store must not see."""
        windows = WindowStore(window=self.windows.window, sites=copies,
                              version=self.windows.version)
        windows.sync(part.inventory, config.monitor.window)
        return windows

    @staticmethod
    def _replay_into(windows: WindowStore, board: Board,
                     rounds: Iterable[tuple[Site, SiteRound]]) -> None:
        now = time.time()
        for site, site_round in rounds:
            if windows.holds(site.id, site_round):
                continue  # its window was copied after the round landed
            if windows.record(site.id, site.probe_key(), site_round):
                board.update(site.id, now)

    def _swap(self, config: Config, part: Share, windows: WindowStore,
              board: Board) -> None:
        """Everything new was built aside; now the switch, which only the scheduler's jobs
        can fail, and they are put back as they were if they do."""
        monitor = config.monitor
        events = self.testruns.prepare(config) if self.testruns is not None else None
        if monitor.listen != self.config.monitor.listen:
            log.warning("listen address changes take effect on restart only")
        if monitor.state_dir != self.config.monitor.state_dir:
            log.warning("state_dir changes take effect on restart only")
        if monitor.vantage != self.config.monitor.vantage:
            log.warning("[monitor.vantage] changes take effect on restart only")
        old = (self.config, self.share, self.windows, self.board)
        self.config, self.share, self.windows, self.board = config, part, windows, board
        try:
            if self.scheduler is not None:
                self.scheduler.apply(part.inventory, max_concurrency=monitor.max_concurrency,
                                     spread=monitor.spread)
            if self.testruns is not None and events is not None:
                self.testruns.commit(events)
        except BaseException:
            self.config, self.share, self.windows, self.board = old
            if self.scheduler is not None:
                previous = old[0].monitor
                self.scheduler.apply(old[1].inventory, max_concurrency=previous.max_concurrency,
                                     spread=previous.spread)
            raise

    # -- reading -------------------------------------------------------------------------

    @property
    def api_token(self) -> str | None:
        return self.config.api_token

    def record(self, site: Site, site_round: SiteRound) -> None:
        """A site's round is done: remember it and judge the site, once, now."""
        if self.windows.record(site.id, site.probe_key(), site_round):
            self.board.update(site.id, time.time(), children_later=True)
            if self.board.cascading and self._cascading is None:
                self._cascading = asyncio.ensure_future(self._cascade())
        if self._replay is not None:
            self._replay.append((site, site_round))

    async def _cascade(self) -> None:
        """Children whose parent's "down" changed, judged again a slice at a time (see
        ``Board.cascade_in_steps``), on whichever board runs (a reload may swap it)."""
        try:
            while self.board.cascading:
                await cooperative.run(self.board.cascade_in_steps())
        finally:
            self._cascading = None

    async def _keep_house(self) -> None:
        """Once a second: verdicts gone stale by time alone (a slice at a time), and the
        hourly full garbage collection when it is due (see gc_pacing)."""
        while True:
            await asyncio.sleep(1.0)
            await cooperative.run(self.board.sweep_in_steps(time.time()))
            self.gc_pacer.step()

    async def _watch_vantage(self, ctx: ProbeContext) -> None:
        """Each round, and at least every ANCHORS_EVERY: probe the anchors, decide the
        isolation, and when it changes judge every site again, a slice at a time."""
        while True:
            started = time.monotonic()
            if self.vantage.anchors:
                await self.vantage.probe_anchors(ctx)
            board = self.board
            if board.inventory is not None and self.vantage.decide(board.failures,
                                                                   time.time()):
                await cooperative.run(board.isolate(self.vantage.isolated_since, 1))
            every = min(self.config.monitor.interval, ANCHORS_EVERY)
            await asyncio.sleep(max(0.5, every - (time.monotonic() - started)))

    def snapshot(self) -> Snapshot:
        pinger = self.pinger
        scheduler = self.scheduler
        inventory = self.board.inventory or self.share.inventory
        snapshot = Snapshot(
            vantage=self.vantage.figures(),
            taken_at=time.time(),
            started_at=self.started_at,
            inventory=inventory,
            sites=MappingProxyType(dict(self.board.views)),
            # A root every shard probes is shown by the one shard that owns it.
            order=self.share.order,
            exported=self.share.exported,
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
            quarantined=tuple(self.testruns.quarantined) if self.testruns else (),
            http=HttpFigures(self.listener.connections, self.listener.refused[0],
                             self.listener.abandoned) if self.listener else HttpFigures(),
        )
        gc_pacing.settle()  # its copy of the 12,000 views (gc_pacing.settle)
        return snapshot
