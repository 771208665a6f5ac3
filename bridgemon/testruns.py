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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridgemon.config import Config
from bridgemon.durations import format_duration
from bridgemon.events import ZONE, Event, EventModel, build_event
from bridgemon.history import History
from bridgemon.pretests import Pretest, missed, upcoming
from bridgemon.probes import ProbeContext
from bridgemon.scheduler import RoundScheduler
from bridgemon.testrun import TestPlan, plan_test, run_test

log = logging.getLogger(__name__)


class EventRejected(ValueError):
    """An event from the API that cannot be added; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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
        self._api_models: dict[str, dict[str, Any]] = _read_events(self._events_file)
        self.api_events: dict[str, Event] = {}
        self.latest: dict[str, dict[str, Any]] = {}  # event id -> its latest finished report
        self.running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._catch_ups: set[asyncio.Task[None]] = set()

    # -- events --------------------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.config.events, *self.api_events.values())

    def event(self, event_id: str) -> Event | None:
        return next((e for e in self.events if e.id == event_id), None)

    def _resolve_api_events(self) -> None:
        events: dict[str, Event] = {}
        for event_id, raw in self._api_models.items():
            problems: list[str] = []
            try:
                model = EventModel.model_validate(raw)
            except ValueError as exc:
                log.warning("event %s added through the API is no longer valid: %s",
                            event_id, exc)
                continue
            event = build_event(model, self.config.inventory, _collect(problems),
                                ("events",), "api")
            if event is None:
                log.warning("event %s added through the API no longer resolves: %s",
                            event_id, "; ".join(problems))
                continue
            events[event_id] = event
        self.api_events = events

    def add_event(self, raw: dict[str, Any]) -> Event:
        """Validate, resolve against the inventory, persist and schedule an event."""
        try:
            model = EventModel.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            raise EventRejected(field, str(first["msg"]).removeprefix("Value error, ")) \
                from None
        if self.event(model.id) is not None:
            raise EventRejected("id", f"event {model.id!r} exists already")
        problems: list[tuple[str, str]] = []
        event = build_event(
            model, self.config.inventory,
            lambda loc, msg: problems.append((str(loc[-1]), msg)), ("events",), "api",
        )
        if event is None:
            raise EventRejected(*problems[0])
        # Saved first: an event the disk refused is not half-added in memory.
        models = {**self._api_models, model.id: model.model_dump(mode="json")}
        _write_events(self._events_file, models)
        self._api_models = models
        self.api_events[model.id] = event
        self.plan()
        return event

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        marked = await loop.run_in_executor(self._writer, self.history.mark_incomplete)
        for run_id in marked:
            log.warning("test run %s was interrupted (daemon stopped); marked incomplete", run_id)
        self._resolve_api_events()
        await self._load_latest()
        self.plan(catch_up=True)

    async def stop(self) -> None:
        tasks = [*self.running.values(), *self._catch_ups]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._writer.shutdown(wait=True)

    def apply(self, config: Config) -> None:
        """A reloaded inventory: re-resolve API events and re-plan every pre-test."""
        self.config = config
        self._resolve_api_events()
        self.plan()

    async def _load_latest(self) -> None:
        loop = asyncio.get_running_loop()
        for event in self.events:
            runs = await loop.run_in_executor(
                self._writer, functools.partial(self.history.list, limit=10, event=event.id)
            )
            for run in runs:
                if run["status"] == "complete":
                    report = await loop.run_in_executor(
                        self._writer, self.history.get, run["run_id"]
                    )
                    if report is not None:
                        self.latest[event.id] = report
                    break

    def plan(self, *, catch_up: bool = False) -> None:
        """(Re)schedule every upcoming pre-test; with ``catch_up``, run missed ones now."""
        now = datetime.now(ZONE)
        events = self.events
        jobs = [
            (pretest.job_id, pretest.when, self._scheduled, (pretest,))
            for pretest in upcoming(events, now)
        ]
        self._scheduler.replace_date_jobs("pretest:", jobs)
        if catch_up:
            last = {
                event_id: datetime.fromisoformat(report["started_at"])
                for event_id, report in self.latest.items()
            }
            for pretest in missed(events, now, last):
                log.warning("pre-test T-%s of event %s was missed while bridgemon was down; "
                            "running it now", format_duration(pretest.offset), pretest.event_id)
                task = asyncio.ensure_future(self._scheduled(pretest))
                self._catch_ups.add(task)
                task.add_done_callback(self._catch_ups.discard)

    async def _scheduled(self, pretest: Pretest) -> None:
        event = self.event(pretest.event_id)
        if event is None:
            return
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


def _collect(problems: list[str]) -> Callable[[tuple[str | int, ...], str], None]:
    def issue(_loc: tuple[str | int, ...], message: str) -> None:
        problems.append(message)

    return issue


def _read_events(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("cannot read %s (%s); events added through the API are not loaded",
                  path, exc)
        return {}
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _write_events(path: Path, models: dict[str, dict[str, Any]]) -> None:
    """Atomically: a crash mid-write must not lose the events already added."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(models, ensure_ascii=False, indent=2), encoding="utf-8")
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)
