"""Test runs inside the daemon: scheduled pre-tests, API-started runs, events added at run
time (``saved_events``), the history store and the latest run of every event (for
/metrics), and the operators' acknowledgements and notes (``notes.py``, in the same file).

The daemon owns one TestRuns; it shares the daemon's pinger and probe context, so a test
run and the regular rounds never open a second set of ICMP sockets. Runs go through
``run.run_and_store``, as ``bridgemon test``'s do, with the history's writes on one thread
of their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from bridgemon import cooperative
from bridgemon.config import Config
from bridgemon.durations import format_duration
from bridgemon.events import ZONE, Event
from bridgemon.probes import ProbeContext
from bridgemon.scheduler import RoundScheduler
from bridgemon.shards import Share
from bridgemon.snapshot import Quarantined
from bridgemon.testrun import history, saved_events
from bridgemon.testrun.history import History
from bridgemon.testrun.notes import Ack, Note, Notes, NotFound
from bridgemon.testrun.plan import TestPlan, plan_with_in_steps
from bridgemon.testrun.pretests import Pretest, missed, upcoming
from bridgemon.testrun.run import run_and_store
from bridgemon.testrun.saved_events import (
    EventNotRemovable,
    EventRejected,
    EventsFull,
    EventUnresolved,
    SavedEvent,
    check_event,
    resolve_event,
)
from bridgemon.testrun_schema import Report, RunListing, Trigger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsPlan:
    """What a configuration makes of the events, computed before anything is changed:
    ``TestRuns.commit`` only swaps it in."""

    config: Config
    api_events: dict[str, Event]
    jobs: tuple[Pretest, ...]  # pre-tests still ahead
    catch_up: tuple[Pretest, ...]  # pre-tests already past that have not run: run now


class TestRuns:
    def __init__(self, config: Config, ctx: ProbeContext, scheduler: RoundScheduler,
                 share: Callable[[], Share] | None = None) -> None:
        self.config = config
        # The daemon's current share (it changes on reload): a shard tests only its sites.
        self._share = share
        self._ctx = ctx
        self._scheduler = scheduler
        state_dir = config.monitor.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._events_file = state_dir / saved_events.FILE
        self.history = History(history.file_in(state_dir))
        self.notebook = Notes(history.file_in(state_dir))
        # event id -> site id -> the take held now: read by every page render on the loop,
        # so kept here and changed only after the database has committed the change.
        self._held: dict[str, dict[str, Ack]] = {}
        # One writer thread: SQLite commits stay off the event loop and in order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._saved: dict[str, SavedEvent] = {}  # events.json: id -> event as posted
        self.api_events: dict[str, Event] = {}
        self.latest: dict[str, Report] = {}  # event id -> its latest finished report
        self.running: dict[str, asyncio.Task[Report]] = {}
        self._catch_ups: set[asyncio.Task[None]] = set()
        # event id -> when its latest pre-test began here: a run still going counts as done
        # for catch-up, so a reload during a pre-test does not start a second one.
        self._began: dict[str, datetime] = {}
        self._jobs: tuple[Pretest, ...] = ()
        self.quarantined: list[Quarantined] = []  # events files set aside at start
        self.started = False  # the API adds events only once the saved ones are read

    # -- events --------------------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.config.events, *self.api_events.values())

    def event(self, event_id: str) -> Event | None:
        return next((e for e in self.events if e.id == event_id), None)

    def add_event(self, raw: object) -> Event:
        """Validate, resolve against the inventory, persist and schedule an event; a pre-test
        already past (an event added less than its first offset before it starts) runs now."""
        now = datetime.now(ZONE)
        model, event = resolve_event(raw, self.config.inventory, now)
        if self.event(model.id) is not None or model.id in self._saved:
            raise EventRejected("id", f"event {model.id!r} exists already")
        if len(self._saved) >= saved_events.MAX_SAVED:
            raise EventsFull("id", f"{len(self._saved)} events added through the API are "
                                   "kept already, the most there can be: remove past ones "
                                   "(DELETE /api/v1/events/ID) before adding another")
        self._save({**self._saved, model.id: model.model_dump(mode="json")}, now)
        return event

    def remove_event(self, event_id: str) -> SavedEvent:
        """Forget an event added through the API (its pre-tests are no longer planned; the
        runs it had stay in the history) and give it back as it was posted. Raises
        EventNotRemovable for an unknown event or one declared in the inventory, OSError if
        the file could not be written (then nothing is removed)."""
        if event_id not in self._saved:
            if any(event.id == event_id for event in self.config.events):
                raise EventNotRemovable("id", f"event {event_id!r} is declared in "
                                              f"{self.config.path}: remove it there and "
                                              "reload", 409)
            raise EventNotRemovable("id", f"no event {event_id!r} was added through the "
                                          "API", 404)
        removed = self._saved[event_id]
        self._save({key: raw for key, raw in self._saved.items() if key != event_id},
                   datetime.now(ZONE))
        return removed

    def _save(self, saved: dict[str, SavedEvent], now: datetime) -> None:
        """Plan the events with ``saved`` as the API's, write them, then switch to them."""
        plan = self.prepare(self.config, saved=saved, now=now)
        # Saved first: a change the disk refused is not half-made in memory.
        saved_events.write(self._events_file, saved)
        self._saved = saved
        self.commit(plan)

    def prepare(self, config: Config, *, saved: dict[str, SavedEvent] | None = None,
                now: datetime | None = None) -> EventsPlan:
        """Everything ``config`` and the saved API events make of the pre-test plan. Raises
        (EventRejected or anything else) if an event of ``config`` cannot be planned; changes
        nothing either way."""
        now = now or datetime.now(ZONE)
        for event in config.events:
            try:
                check_event(event, now)
            except EventRejected as exc:
                raise EventRejected(exc.field, f"event {event.id!r}: {exc.field}: {exc}") \
                    from None
        api: dict[str, Event] = {}
        taken = {event.id for event in config.events}
        for event_id, raw in (self._saved if saved is None else saved).items():
            if event_id in taken:
                log.warning("event %s added through the API is shadowed by the inventory's "
                            "event of the same id; the inventory's is used", event_id)
                continue
            try:
                _model, event = resolve_event(raw, config.inventory, now)
            except EventUnresolved as exc:
                log.warning("event %s added through the API no longer resolves: %s",
                            event_id, exc)
                continue
            except EventRejected as exc:
                log.warning("event %s added through the API is no longer valid: %s: %s",
                            event_id, exc.field, exc)
                continue
            api[event_id] = event
        events = (*config.events, *api.values())
        return EventsPlan(config, api, tuple(upcoming(events, now)),
                          tuple(missed(events, now, self._last_runs())))

    def commit(self, plan: EventsPlan) -> None:
        """Swap in a prepared plan; if the scheduler refuses it, the previous plan stays."""
        try:
            self._scheduler.replace_date_jobs("pretest:", self._job_specs(plan.jobs))
        except BaseException:
            self._scheduler.replace_date_jobs("pretest:", self._job_specs(self._jobs))
            raise
        self.config = plan.config
        self.api_events = plan.api_events
        self._jobs = plan.jobs
        for pretest in plan.catch_up:
            log.warning("pre-test T-%s of event %s (due %s) has not run; running it now",
                        format_duration(pretest.offset), pretest.event_id,
                        pretest.when.isoformat(timespec="seconds"))
            self._began[pretest.event_id] = datetime.now(ZONE)
            task = asyncio.ensure_future(self._scheduled(pretest))
            self._catch_ups.add(task)
            task.add_done_callback(self._catch_ups.discard)

    def _job_specs(self, jobs: tuple[Pretest, ...]) -> list[
            tuple[str, datetime, Callable[[Pretest], Awaitable[None]], tuple[Pretest]]]:
        return [(pretest.job_id, pretest.when, self._scheduled, (pretest,)) for pretest in jobs]

    def _last_runs(self) -> dict[str, datetime]:
        """Event id -> when its latest run began (a finished report, or one begun here)."""
        last = dict(self._began)
        for event_id, report in self.latest.items():
            started = datetime.fromisoformat(report["started_at"])
            if event_id not in last or last[event_id] < started:
                last[event_id] = started
        return last

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        marked = await loop.run_in_executor(self._writer, self.history.mark_incomplete)
        for run_id in marked:
            log.warning("test run %s was interrupted (daemon stopped); marked incomplete", run_id)
        self._saved, quarantined = saved_events.load(self._events_file, self.config.inventory,
                                                     datetime.now(ZONE))
        if quarantined is not None:
            self.quarantined.append(quarantined)
        await self._load_latest([*(e.id for e in self.config.events), *self._saved])
        held = await loop.run_in_executor(self._writer, self.notebook.held)
        for ack in held:
            self._held.setdefault(ack.event_id, {})[ack.site_id] = ack
        self.commit(self.prepare(self.config))
        self.started = True

    async def stop(self) -> None:
        tasks = [*self.running.values(), *self._catch_ups]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._writer.shutdown(wait=True)
        self.notebook.close()

    async def _load_latest(self, event_ids: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for event_id in dict.fromkeys(event_ids):
            runs = await loop.run_in_executor(
                self._writer, functools.partial(self.history.list, limit=10, event=event_id)
            )
            for run in runs:
                if run["status"] == "complete":
                    report = await loop.run_in_executor(
                        self._writer, self.history.get, run["run_id"]
                    )
                    if report is not None:
                        self.latest[event_id] = report
                    break

    async def _scheduled(self, pretest: Pretest) -> None:
        event = self.event(pretest.event_id)
        if event is None:
            return
        self._began[event.id] = datetime.now(ZONE)
        log.info("pre-test of event %s (%s) starting", event.id, event.title)
        try:
            await self.start_run(event=event, trigger="schedule",
                                 operator="bridgemon (lịch tự động)")
        except Exception:
            log.exception("pre-test of event %s failed", event.id)

    # -- runs ----------------------------------------------------------------------------

    async def plan_run(self, *, selector: str | None = None, event: Event | None = None,
                       count: int | None = None, trigger: Trigger,
                       operator: str) -> TestPlan:
        """Planned on the loop a slice at a time (urgent: an API call is timed)."""
        plan = await cooperative.run(plan_with_in_steps(
            self.config.test, self.config.inventory, selector=selector, event=event,
            count=count, trigger=trigger, operator=operator), urgent=True)
        return plan if self._share is None else share_of(plan, self._share())

    async def start_run(self, *, selector: str | None = None, event: Event | None = None,
                        count: int | None = None, trigger: Trigger, operator: str) -> Report:
        """Run a test to the end; the report is in the history from its first site on."""
        plan = await self.plan_run(selector=selector, event=event, count=count,
                                   trigger=trigger, operator=operator)
        task = asyncio.ensure_future(self._run(plan))
        self.running[plan.run_id] = task
        task.add_done_callback(lambda _: self.running.pop(plan.run_id, None))
        return await asyncio.shield(task)

    def launch(self, plan: TestPlan) -> None:
        """Start a planned run in the background (the API answers before it ends). Its
        sites are not kept in memory (a national run's are 48 MB) unless it is an event's,
        whose latest run its page shows: the others are read back from the history."""
        task = asyncio.ensure_future(self._run(plan, keep_sites=plan.event is not None))
        self.running[plan.run_id] = task
        task.add_done_callback(lambda _: self.running.pop(plan.run_id, None))
        task.add_done_callback(_log_run_failure)

    async def _run(self, plan: TestPlan, *, keep_sites: bool = True) -> Report:
        # Stopped (daemon shutdown) or broken, what was stored stays, marked incomplete.
        report = await run_and_store(plan, self.config.inventory, self._ctx, self.history,
                                     writer=self._writer, keep_sites=keep_sites)
        if plan.event is not None:
            self.latest[plan.event.id] = report
        log.info("test run %s finished: %s", plan.run_id, report["summary"])
        return report

    async def get(self, run_id: str) -> Report | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.history.get, run_id)

    async def list(self, limit: int = 50, event: str | None = None) -> list[RunListing]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, functools.partial(self.history.list, limit=limit, event=event)
        )


    # -- acknowledgements and notes -----------------------------------------------------

    def taken(self) -> Mapping[str, Mapping[str, Ack]]:
        """Event id -> site id -> who holds it now (no database read)."""
        return self._held

    def _participant(self, event_id: str, site_id: str) -> None:
        event = self.event(event_id)
        if event is None:
            raise NotFound("event", f"Không có hội nghị mã {event_id!r} (unknown event)")
        if site_id not in event.participants:
            raise NotFound("site", f"Điểm cầu {site_id!r} không tham gia hội nghị "
                                   f"{event_id!r} (not a participant of this event)")

    async def take(self, event_id: str, site_id: str, *, user: str, note: str) -> Ack:
        """Raises NotFound, NoteRejected or AlreadyTaken; nothing is stored then."""
        self._participant(event_id, site_id)
        loop = asyncio.get_running_loop()
        ack = await loop.run_in_executor(
            self._writer, functools.partial(self.notebook.take, event_id, site_id, user, note))
        self._held.setdefault(event_id, {})[site_id] = ack
        log.info("site %s of event %s taken by %r", site_id, event_id, user)
        return ack

    async def release(self, event_id: str, site_id: str, *, user: str) -> Ack | None:
        self._participant(event_id, site_id)
        loop = asyncio.get_running_loop()
        released = await loop.run_in_executor(
            self._writer, functools.partial(self.notebook.release, event_id, site_id, user))
        self._held.get(event_id, {}).pop(site_id, None)
        if released is not None:
            log.info("site %s of event %s released by %r (held by %r)", site_id, event_id,
                     user, released.user)
        return released

    async def site_notes(self, site_id: str, limit: int = 50) -> Sequence[Note]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, functools.partial(self.notebook.notes, site_id, limit))

    async def add_note(self, site_id: str, *, user: str, text: str,
                       event_id: str | None = None) -> Note:
        """Raises NotFound (site, event) or NoteRejected; nothing is stored then. The
        text is never logged: people paste anything into a note."""
        if site_id not in self.config.inventory.sites:
            raise NotFound("site", f"Không có điểm cầu mã {site_id!r} (unknown site)")
        if event_id is not None:
            self._participant(event_id, site_id)
        loop = asyncio.get_running_loop()
        note = await loop.run_in_executor(self._writer, functools.partial(
            self.notebook.add_note, site_id, user, text, event_id))
        log.info("note %d on site %s by %r", note.id, site_id, user)
        return note


def share_of(plan: TestPlan, part: Share) -> TestPlan:
    """The plan cut to a shard's share: the sites it exports, and as context the parents
    it probes only to judge parent_down (the root, which every shard probes, among them).
    Planned on the whole inventory first, so a selector or an event is judged the same way
    on every shard, and N shards test each site once, not N times."""
    if part.shard.whole:
        return plan
    sites = tuple(site for site in plan.sites if site.id in part.exported)
    ids = {site.id for site in sites}
    context = {ancestor.id: ancestor for site in sites
               for ancestor in part.inventory.ancestors(site.id) if ancestor.id not in ids}
    return replace(plan, sites=sites, context=tuple(context.values()))


def _log_run_failure(task: asyncio.Task[Report]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("test run failed: %s", task.exception(), exc_info=task.exception())
