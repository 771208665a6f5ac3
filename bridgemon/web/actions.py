"""What the web app may ask of the daemon: a snapshot to read, and a few actions.

The app reads everything it shows from ``Snapshot`` (an immutable picture, see
snapshot.py) and acts only through these protocols: reload the configuration, add an
event, plan, start and read test runs. So the web layer never imports the daemon, never
reaches into its live parts (the window store, the scheduler's counters, the pinger), and
can be served from any object that keeps this contract — the daemon's ``Monitor`` does.
The operators' acknowledgements and notes go the same way: stored by the test runs'
side (testrun/notes.py), never by a handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridgemon.events import Event
from bridgemon.snapshot import Snapshot
from bridgemon.testrun.notes import Ack, Note
from bridgemon.testrun.plan import TestPlan
from bridgemon.testrun_schema import Report, RunListing, Trigger


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    errors: tuple[str, ...]
    sites: int
    stage: str = ""  # where a rejected reload failed: "load" (the file) or "apply"


class TestRunActions(Protocol):
    """Test runs and events (``testrun.service.TestRuns``)."""

    @property
    def started(self) -> bool:
        """False until the saved events are read: the API adds none before."""
        ...

    def event(self, event_id: str) -> Event | None: ...

    def add_event(self, raw: object) -> Event:
        """Raises saved_events.EventRejected naming the field (EventsFull when the most
        there can be are kept), OSError if not saved."""
        ...

    def remove_event(self, event_id: str) -> dict[str, Any]:
        """The event as it was posted. Raises saved_events.EventNotRemovable (with the HTTP
        status: unknown, or declared in the inventory), OSError if not saved."""
        ...

    def plan_run(self, *, selector: str | None = None, event: Event | None = None,
                 count: int | None = None, trigger: Trigger,
                 operator: str) -> Awaitable[TestPlan]:
        """Raises SelectorError for a selector the inventory cannot satisfy."""
        ...

    def launch(self, plan: TestPlan) -> None: ...

    def list(self, limit: int = 50, event: str | None = None) -> Awaitable[list[RunListing]]:
        ...

    def get(self, run_id: str) -> Awaitable[Report | None]: ...

    def taken(self) -> Mapping[str, Mapping[str, Ack]]:
        """Event id -> site id -> the take held now; read on the loop, no I/O."""
        ...

    def take(self, event_id: str, site_id: str, *, user: str, note: str) -> Awaitable[Ack]:
        """Raises notes.NotFound (event, site), NoteRejected or AlreadyTaken."""
        ...

    def release(self, event_id: str, site_id: str, *, user: str) -> Awaitable[Ack | None]:
        """Raises notes.NotFound; None when nobody held the site."""
        ...

    def site_notes(self, site_id: str, limit: int = 50) -> Awaitable[Sequence[Note]]:
        """Newest first."""
        ...

    def add_note(self, site_id: str, *, user: str, text: str,
                 event_id: str | None = None) -> Awaitable[Note]:
        """Raises notes.NotFound (site, event) or NoteRejected."""
        ...


class MonitorActions(Protocol):
    """The daemon, as the web app sees it."""

    @property
    def api_token(self) -> str | None:
        """The Bearer token of the mutating API; None: that API is off."""
        ...

    @property
    def testruns(self) -> TestRunActions | None:
        """None until the daemon has started its test runs."""
        ...

    def snapshot(self) -> Snapshot: ...

    def reload(self) -> Awaitable[ReloadOutcome]:
        """Load the file again, all or nothing (the old configuration runs on if refused)."""
        ...
