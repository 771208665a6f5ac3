"""Events added through the API: checked exactly as the inventory's events are, and kept
in ``events.json`` in the state directory.

An event is validated by the loader's own model and builder (``events.EventModel``,
``events.build_event``) and then by ``check_event``, which computes up front everything
the daemon will compute about it later, so an event that is accepted can never break
planning, /metrics, the page or the API afterwards. The file is written atomically, and
read back event by event at start: a file that cannot be used is set aside (quarantined),
never a reason for the daemon not to start.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridgemon.events import ZONE, Event, EventModel, build_event, event_json
from bridgemon.inventory import Inventory
from bridgemon.snapshot import Quarantined
from bridgemon.testrun.pretests import missed, upcoming

log = logging.getLogger(__name__)

FILE = "events.json"  # in the state directory
# Events added through the API, kept at most: a year of several conferences a day. Each is
# planned again at every reload and every change, and the file is written whole.
MAX_SAVED = 1000

# An event as it was posted (its EventModel's JSON), as events.json keeps it.
SavedEvent = dict[str, Any]


class EventRejected(ValueError):
    """An event that cannot be added or kept; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class EventsFull(EventRejected):
    """``MAX_SAVED`` events are kept already: one must be removed before another is added."""


class EventNotRemovable(EventRejected):
    """Unknown, or declared in the inventory (the file is where it is removed)."""

    def __init__(self, field: str, message: str, status: int) -> None:
        super().__init__(field, message)
        self.status = status


class EventUnresolved(EventRejected):
    """A well-formed event whose participants the current inventory does not have: kept in
    events.json (a later inventory may have them again), left out of the plan meanwhile."""


def one_line(exc: BaseException) -> str:
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
                                     f"{one_line(exc)} (too close to year 1 or 9999)") \
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
                                        f"{one_line(exc)}") from None


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
        raise EventRejected("body", f"invalid event: {one_line(exc)}") from None
    problems: list[tuple[str, str]] = []

    def issue(loc: tuple[str | int, ...], message: str) -> None:
        problems.append((str(loc[-1]) if loc else "body", message))

    try:
        event = build_event(model, inventory, issue, ("events",), source)
    except Exception as exc:
        raise EventRejected("start", f"the event's times cannot be computed: "
                                     f"{one_line(exc)}") from None
    if event is None or problems:
        field, message = problems[0] if problems else ("body", "invalid event")
        unresolved = field == "participants" and all(f == field for f, _ in problems)
        raise (EventUnresolved if unresolved else EventRejected)(field, message)
    check_event(event, now)
    return model, event


def load(path: Path, inventory: Inventory, now: datetime
         ) -> tuple[dict[str, SavedEvent], Quarantined | None]:
    """events.json, checked event by event as the API checks a new one: the good events,
    and the record of the file if it had to be set aside (it cannot be read, or holds an
    event that can never be planned). A missing file is no events."""
    try:
        data: object = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, RecursionError) as exc:
        return {}, quarantine(path, {}, [f"cannot read it: {one_line(exc)}"])
    if not isinstance(data, dict):
        return {}, quarantine(path, {}, ["it is not a JSON object of events by id"])
    good: dict[str, SavedEvent] = {}
    problems: list[str] = []
    for key, raw in data.items():
        try:
            model, _event = resolve_event(raw, inventory, now)
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
    return good, (quarantine(path, good, problems) if problems else None)


def quarantine(path: Path, good: dict[str, SavedEvent], problems: list[str]) -> Quarantined:
    """Move ``path`` aside (``events.json.bad-STAMP``) and write the good events back."""
    stamp = datetime.now(ZONE).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    suffix = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{stamp}-{suffix}")
        suffix += 1
    try:
        os.replace(path, target)
        if good:
            write(path, good)
    except OSError as exc:
        log.error("cannot set %s aside (%s); its bad events are ignored", path, one_line(exc))
        moved = None
    else:
        moved = str(target)
    log.error("%s holds events that cannot be used; moved to %s, started with the %d good "
              "events: %s", path, moved, len(good), "; ".join(problems))
    return {"file": str(path), "moved_to": moved, "kept": len(good), "problems": problems}


def write(path: Path, models: dict[str, SavedEvent]) -> None:
    """Atomically: a crash mid-write must not lose the events already added."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(models, ensure_ascii=False, indent=2), encoding="utf-8")
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)
