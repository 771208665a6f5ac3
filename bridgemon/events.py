"""Conferences (hội nghị trực tuyến): when they are, who takes part, when to test first.

An event's participants are a selector over the inventory, resolved when the inventory
is loaded, so an event can never name a site bridgemon was not configured with. Pre-test
runs happen at ``start - offset`` for each offset (default T-24h, T-2h, T-30m).

Every instant the daemon will ever compute from an event (its end, its pre-test times, in
UTC and in the display zone) is computed when the event is built: an event the loader
accepts cannot overflow a datetime later. Starts are kept to the years 2000-2099 (and
durations to a year, see durations.py), which keeps all of it far from datetime's ends.

```toml
[[events]]
id = "hn-ubnd-2026-12"
title = "Hội nghị trực tuyến UBND tỉnh tháng 12/2026"
start = 2026-12-15T08:00:00          # local time of `timezone`; an offset may be given
timezone = "Asia/Ho_Chi_Minh"        # default
duration = "3h"
participants = "49,level:district"   # selector (or a list of them)
pretests = ["24h", "2h", "30m"]      # default
```
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridgemon.config_issues import Issue
from bridgemon.config_source import Loc
from bridgemon.durations import Duration, format_duration
from bridgemon.inventory import Inventory, SelectorError

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
ZONE = ZoneInfo(DEFAULT_TIMEZONE)  # how times are shown to people, whatever the host's zone
DEFAULT_PRETESTS = (86400.0, 7200.0, 1800.0)
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FIRST_YEAR, LAST_YEAR = 2000, 2099  # of an event's start, as written


class EventModel(BaseModel):
    """An event as written in the inventory or posted to the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str = Field(min_length=1, max_length=300)
    start: datetime | str
    timezone: str = DEFAULT_TIMEZONE
    duration: Duration = Field(default=7200.0, gt=0, le=7 * 86400)
    participants: str | list[str]
    pretests: list[Duration] = Field(default_factory=lambda: list(DEFAULT_PRETESTS),
                                     max_length=20)
    count: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not EVENT_ID.fullmatch(value):
            raise ValueError(f"bad event id {value!r}: letters, digits, '.', '_', '-' (≤ 64)")
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> object:
        if isinstance(value, date) and not isinstance(value, datetime):
            raise ValueError("start needs a time of day too, e.g. 2026-12-15T08:00:00")
        if isinstance(value, time):
            raise ValueError("start needs a date too, e.g. 2026-12-15T08:00:00")
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"bad start {value!r}: use ISO 8601, e.g. 2026-12-15T08:00:00"
                ) from None
        return value

    @field_validator("start")
    @classmethod
    def _start_year(cls, value: datetime | str) -> datetime | str:
        if isinstance(value, datetime) and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"the year {value.year} is out of range: give a start in "
                             f"{FIRST_YEAR}-{LAST_YEAR}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. {DEFAULT_TIMEZONE!r})") from None
        return value

    @field_validator("pretests")
    @classmethod
    def _pretests(cls, value: list[float]) -> list[float]:
        if any(offset <= 0 for offset in value):
            raise ValueError("pre-test offsets are times before the start, each > 0")
        return value


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    title: str
    start: datetime  # aware
    end: datetime
    selector: str
    participants: tuple[str, ...]  # site ids, in tree order
    pretests: tuple[float, ...]  # seconds before start, largest first
    count: int | None = None
    source: str = "config"  # or "api"
    _pretest_times: tuple[tuple[float, datetime], ...] = field(init=False, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        """Everything the daemon computes from the times, now: OverflowError here, at load,
        rather than in a running daemon."""
        times = tuple((offset, self.start - timedelta(seconds=offset))
                      for offset in self.pretests)
        for instant in (self.start, self.end, *(when for _, when in times)):
            instant.astimezone(UTC)
            instant.astimezone(ZONE)
            instant.timestamp()
        object.__setattr__(self, "_pretest_times", times)

    def pretest_times(self) -> list[tuple[float, datetime]]:
        """(offset, when) for every pre-test, earliest first."""
        return list(self._pretest_times)

    def describe_offset(self, offset: float) -> str:
        return f"T-{format_duration(offset)}"


def build_event(
    model: EventModel, inventory: Inventory, issue: Issue, loc: Loc,
    source: str = "config", broken: Collection[str] = (),
) -> Event | None:
    """Resolve an event against the inventory; report problems and return None if any.

    ``broken``: ids of sites the file has but the inventory lacks because of their own
    errors; a selector naming one is not called unknown (those errors say why)."""
    zone = ZoneInfo(model.timezone)
    start = model.start if isinstance(model.start, datetime) else datetime.fromisoformat(
        model.start
    )
    selectors = [model.participants] if isinstance(model.participants, str) else list(
        model.participants
    )
    selector = ",".join(s.strip() for s in selectors if s.strip())
    try:
        participants = tuple(site.id for site in inventory.select(selector))
    except SelectorError as exc:
        if exc.site not in broken:
            issue((*loc, "participants"), str(exc))
        return None
    if not participants:
        issue((*loc, "participants"), f"selector {selector!r} matches no site")
        return None
    try:
        start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
        return Event(
            id=model.id,
            title=model.title,
            start=start,
            end=start + timedelta(seconds=model.duration),
            selector=selector,
            participants=participants,
            pretests=tuple(sorted(set(model.pretests), reverse=True)),
            count=model.count,
            source=source,
        )
    except (OverflowError, ValueError) as exc:
        issue((*loc, "start"), f"its times cannot be computed ({exc}): check start, "
                               "duration and pretests")
        return None


def event_json(event: Event, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": event.id,
        "title": event.title,
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "selector": event.selector,
        "participants": list(event.participants),
        "pretests": [event.describe_offset(offset) for offset in event.pretests],
        "pretest_times": [when.isoformat() for _, when in event.pretest_times()],
        "count": event.count,
        "source": event.source,
    }
