"""When each event's pre-event test runs are due, and which ones a stopped daemon missed.

Pure functions over events and times; the daemon turns them into APScheduler date jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridgemon.events import Event


@dataclass(frozen=True, slots=True)
class Pretest:
    event_id: str
    offset: float  # seconds before the event's start
    when: datetime

    @property
    def job_id(self) -> str:
        return f"pretest:{self.event_id}:{self.offset:g}"


def upcoming(events: tuple[Event, ...], now: datetime) -> list[Pretest]:
    """Pre-tests still ahead, earliest first."""
    out = [
        Pretest(event.id, offset, when)
        for event in events
        for offset, when in event.pretest_times()
        if when > now
    ]
    return sorted(out, key=lambda pretest: pretest.when)


def missed(
    events: tuple[Event, ...], now: datetime, last_run: dict[str, datetime]
) -> list[Pretest]:
    """For each event not yet started: its latest pre-test already past, if no run of the
    event happened since then (the daemon was down). Run each of those once, now."""
    out: list[Pretest] = []
    for event in events:
        if event.start <= now:
            continue
        past = [(offset, when) for offset, when in event.pretest_times() if when <= now]
        if not past:
            continue
        offset, when = max(past, key=lambda item: item[1])
        ran = last_run.get(event.id)
        if ran is None or ran < when:
            out.append(Pretest(event.id, offset, when))
    return out
