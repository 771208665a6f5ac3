"""Test runs inside the daemon: scheduled pre-tests, API-started runs, events added at run
time, the history store and the latest run of every event (for /metrics).

The daemon owns one TestRuns; it shares the daemon's pinger and probe context, so a test
run and the regular rounds never open a second set of ICMP sockets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridgemon.config import Config
from bridgemon.durations import format_duration
from bridgemon.events import ZONE, Event, EventModel, build_event, event_json
from bridgemon.history import History
from bridgemon.inventory import Inventory
from bridgemon.pretests import Pretest, missed, upcoming
from bridgemon.probes import ProbeContext
from bridgemon.scheduler import RoundScheduler
from bridgemon.testrun import TestPlan, plan_test, run_test

log = logging.getLogger(__name__)


class EventRejected(ValueError):
    """An event that cannot be added or kept; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class EventUnresolved(EventRejected):
    """A well-formed event whose participants the current inventory does not have: kept in
    events.json (a later inventory may have them again), left out of the plan meanwhile."""


def _one_line(exc: BaseException) -> str:
    """An exception's message fit for one log line or one JSON field."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_event(event: Event, now: datetime) -> None:
    """Compute now everything the daemon computes about an event later (times in UTC, in
    Unix time and local time, its pre-test instants and their plan, its API object), so an
    event that passes can never break planning, /metrics, the page or the API afterwards:
    dates near year 1 or 9999 and offsets of centuries overflow here, not at 3 a.m."""
    try:
        for instant in (event.start, event.end):
            instant.astimezone(UTC)
            instant.astimezone(ZONE)
            instant.timestamp()
    except Exception as exc:  # any failure is this event's, never the daemon's
        raise EventRejected("start", f"start {event.start.isoformat()} cannot be used: "
                                     f"{_one_line(exc)} (too close to year 1 or 9999)") \
            from None
    try:
        for _offset, when in event.pretest_times():
            when.astimezone(UTC)
            when.timestamp()
        upcoming((event,), now)
        missed((event,), now, {})
        event_json(event)
    except Exception as exc:
        raise EventRejected("pretests", "pre-test times cannot be computed: "
                                        f"{_one_line(exc)}") from None


def resolve_event(raw: object, inventory: Inventory, now: datetime,
                  source: str = "api") -> tuple[EventModel, Event]:
    """An event from the API or events.json, validated as the loader validates the events of
    the inventory (the same EventModel and build_event), then by ``check_event``. Raises
    EventRejected naming the field for anything wrong, whatever the loader raised."""
    if not isinstance(raw, dict):
        raise EventRejected("body", "an event must be a JSON object")
    try:
        model = EventModel.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise EventRejected(field, str(first["msg"]).removeprefix("Value error, ")) \
            from None
    except Exception as exc:
        raise EventRejected("body", f"invalid event: {_one_line(exc)}") from None
    problems: list[tuple[str, str]] = []

    def issue(loc: tuple[str | int, ...], message: str) -> None:
        problems.append((str(loc[-1]) if loc else "body", message))

    try:
        event = build_event(model, inventory, issue, ("events",), source)
    except Exception as exc:
        raise EventRejected("start", f"the event's times cannot be computed: "
                                     f"{_one_line(exc)}") from None
    if event is None or problems:
        field, message = problems[0] if problems else ("body", "invalid event")
        unresolved = field == "participants" and all(f == field for f, _ in problems)
        raise (EventUnresolved if unresolved else EventRejected)(field, message)
    check_event(event, now)
    return model, event


@dataclass(frozen=True)
class EventsPlan:
    """What a configuration makes of the events, computed before anything is changed:
    ``TestRuns.commit`` only swaps it in."""

    config: Config
    api_events: dict[str, Event]
    jobs: tuple[Pretest, ...]  # pre-tests still ahead
    catch_up: tuple[Pretest, ...]  # pre-tests already past that have not run: run now


class TestRuns:
    def __init__(self, config: Config, ctx: ProbeContext, scheduler: RoundScheduler) -> None:
        self.config = config
        self._ctx = ctx
        self._scheduler = scheduler
        state_dir = config.monitor.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._events_file = state_dir / "events.json"
        self.history = History(state_dir / "bridgemon.db")
        # One writer thread: SQLite commits stay off the event loop and in order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._saved: dict[str, dict[str, Any]] = {}  # events.json: id -> event as posted
        self.api_events: dict[str, Event] = {}
        self.latest: dict[str, dict[str, Any]] = {}  # event id -> its latest finished report
        self.running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._catch_ups: set[asyncio.Task[None]] = set()
        # event id -> when its latest pre-test began here: a run still going counts as done
        # for catch-up, so a reload during a pre-test does not start a second one.
        self._began: dict[str, datetime] = {}
        self._jobs: tuple[Pretest, ...] = ()
        self.quarantined: list[dict[str, Any]] = []  # events files set aside at start
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
        saved = {**self._saved, model.id: model.model_dump(mode="json")}
        plan = self.prepare(self.config, saved=saved, now=now)
        # Saved first: an event the disk refused is not half-added in memory.
        _write_events(self._events_file, saved)
        self._saved = saved
        self.commit(plan)
        return event

    def prepare(self, config: Config, *, saved: dict[str, dict[str, Any]] | None = None,
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
        self._saved = self._read_saved(datetime.now(ZONE))
        await self._load_latest([*(e.id for e in self.config.events), *self._saved])
        self.commit(self.prepare(self.config))
        self.started = True

    async def stop(self) -> None:
        tasks = [*self.running.values(), *self._catch_ups]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._writer.shutdown(wait=True)

    def _read_saved(self, now: datetime) -> dict[str, dict[str, Any]]:
        """events.json, checked event by event as the API checks a new one. A file that
        cannot be read, or holds an event that can never be planned, must not keep the
        daemon from starting: it is set aside (quarantined) and the good events kept."""
        path = self._events_file
        try:
            data: object = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            self._quarantine({}, [f"cannot read it: {_one_line(exc)}"])
            return {}
        if not isinstance(data, dict):
            self._quarantine({}, ["it is not a JSON object of events by id"])
            return {}
        good: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for key, raw in data.items():
            try:
                model, _event = resolve_event(raw, self.config.inventory, now)
            except EventUnresolved:
                good[key] = raw  # well-formed; the inventory may have its sites again later
                continue
            except EventRejected as exc:
                problems.append(f"event {key!r}: {exc.field}: {exc}")
                continue
            if model.id != key:
                problems.append(f"event {key!r}: id: saved under another id ({model.id!r})")
                continue
            good[key] = raw
        if problems:
            self._quarantine(good, problems)
        return good

    def _quarantine(self, good: dict[str, dict[str, Any]], problems: list[str]) -> None:
        path = self._events_file
        stamp = datetime.now(ZONE).strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name}.bad-{stamp}")
        suffix = 1
        while target.exists():
            target = path.with_name(f"{path.name}.bad-{stamp}-{suffix}")
            suffix += 1
        try:
            os.replace(path, target)
            if good:
                _write_events(path, good)
        except OSError as exc:
            log.error("cannot set %s aside (%s); its bad events are ignored", path,
                      _one_line(exc))
            moved = None
        else:
            moved = str(target)
        log.error("%s holds events that cannot be used; moved to %s, started with the %d good "
                  "events: %s", path, moved, len(good), "; ".join(problems))
        self.quarantined.append({"file": str(path), "moved_to": moved, "kept": len(good),
                                 "problems": problems})

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

    def plan_run(self, *, selector: str | None = None, event: Event | None = None,
                 count: int | None = None, trigger: str, operator: str) -> TestPlan:
        settings = self.config.test
        return plan_test(
            self.config.inventory, selector=selector, event=event,
            count=count or settings.count, spacing=settings.spacing, timeout=settings.timeout,
            concurrency=settings.concurrency, trigger=trigger, operator=operator,
        )

    async def start_run(self, *, selector: str | None = None, event: Event | None = None,
                        count: int | None = None, trigger: str, operator: str) -> dict[str, Any]:
        """Run a test to the end; the report is in the history from its first site on."""
        plan = self.plan_run(selector=selector, event=event, count=count, trigger=trigger,
                             operator=operator)
        task = asyncio.ensure_future(self._run(plan))
        self.running[plan.run_id] = task
        task.add_done_callback(lambda _: self.running.pop(plan.run_id, None))
        return await asyncio.shield(task)

    def launch(self, plan: TestPlan) -> None:
        """Start a planned run in the background (the API answers before it ends)."""
        task = asyncio.ensure_future(self._run(plan))
        self.running[plan.run_id] = task
        task.add_done_callback(lambda _: self.running.pop(plan.run_id, None))
        task.add_done_callback(_log_run_failure)

    async def _run(self, plan: TestPlan) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        history = self.history

        def store(func: Callable[..., object], *args: object) -> None:
            future = loop.run_in_executor(self._writer, func, *args)
            future.add_done_callback(_log_store_failure)

        def on_start(header: dict[str, Any]) -> None:
            store(history.begin, header)

        def on_site(site: dict[str, Any]) -> None:
            store(history.add_site, plan.run_id, site)

        try:
            report = await run_test(plan, self.config.inventory, self._ctx,
                                    on_start=on_start, on_site=on_site)
        except BaseException:
            # Stopped (daemon shutdown) or broken: what was stored stays, marked incomplete.
            store(history.abort, plan.run_id)
            raise
        await loop.run_in_executor(
            self._writer, history.finish, plan.run_id, report["finished_at"], report["summary"]
        )
        if plan.event is not None:
            self.latest[plan.event.id] = report
        log.info("test run %s finished: %s", plan.run_id, report["summary"])
        return report

    async def get(self, run_id: str) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.history.get, run_id)

    async def list(self, limit: int = 50, event: str | None = None) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, functools.partial(self.history.list, limit=limit, event=event)
        )


def _log_store_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not store a test-run result: %s", future.exception())


def _log_run_failure(task: asyncio.Task[dict[str, Any]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("test run failed: %s", task.exception(), exc_info=task.exception())


def _write_events(path: Path, models: dict[str, dict[str, Any]]) -> None:
    """Atomically: a crash mid-write must not lose the events already added."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(models, ensure_ascii=False, indent=2), encoding="utf-8")
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)
