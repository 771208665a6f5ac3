"""Events in the inventory and the planning of their pre-tests (pure: no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.date import DateTrigger
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridgemon.config import ConfigError, parse_config
from bridgemon.events import Event, EventModel, build_event, event_json
from bridgemon.testrun.pretests import missed, upcoming
from tests.helpers import inventory_toml

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.0.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.0.0.2"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.0.0.3"},
    {"id": "504", "name": "Huyện Tây Giang", "level": "district", "parent": "49",
     "address": "127.0.0.4"},
]


def load(events: str):  # type: ignore[no-untyped-def]
    return parse_config(inventory_toml(SITES, port=9, extra=events), Path("ev.toml"))


def test_event_resolves_participants_times_and_default_pretests() -> None:
    config = load('''
[[events]]
id = "hn-12"
title = "Hội nghị trực tuyến UBND tỉnh tháng 12"
start = 2026-12-15T08:00:00
duration = "3h"
participants = ["49", "level:district"]
''')
    (event,) = config.events
    assert event.start == datetime(2026, 12, 15, 8, 0, tzinfo=ZONE)
    assert event.start.utcoffset() == timedelta(hours=7)
    assert event.end - event.start == timedelta(hours=3)
    assert event.participants == ("49", "502", "504")
    assert event.pretests == (86400.0, 7200.0, 1800.0)
    times = [when for _, when in event.pretest_times()]
    assert times == [datetime(2026, 12, 14, 8, 0, tzinfo=ZONE),
                     datetime(2026, 12, 15, 6, 0, tzinfo=ZONE),
                     datetime(2026, 12, 15, 7, 30, tzinfo=ZONE)]


def test_an_explicit_offset_is_kept_and_converted() -> None:
    config = load('''
[[events]]
id = "utc"
title = "Họp"
start = "2026-12-15T01:00:00+00:00"
participants = "under:502"
pretests = ["1h"]
''')
    (event,) = config.events
    assert event.start.hour == 8 and event.participants == ("502", "20335")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('start = 2026-12-15T08:00:00\nparticipants = "under:999"',
         "events[0].participants: unknown site '999'"),
        ('start = 2026-12-15T08:00:00\nparticipants = "level:ward"',
         "events[0].participants: unknown level 'ward'"),
        ('start = 2026-12-15\nparticipants = "49"', "start needs a time of day"),
        ('start = "15/12/2026 8h"\nparticipants = "49"', "bad start '15/12/2026 8h'"),
        ('start = 2026-12-15T08:00:00\ntimezone = "Asia/Hanoi_X"\nparticipants = "49"',
         "unknown time zone 'Asia/Hanoi_X'"),
        ('start = 2026-12-15T08:00:00\nparticipants = "49"\npretests = ["-1h"]',
         "bad duration '-1h'"),
        ('start = 2026-12-15T08:00:00\nparticipants = "49"\nroom = "A"', "unknown key"),
    ],
)
def test_bad_events_name_the_line_and_field(body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f'\n[[events]]\nid = "x"\ntitle = "Họp"\n{body}\n')
    text = str(caught.value)
    assert expected in text and "ev.toml:" in text


def test_duplicate_event_ids_are_refused() -> None:
    block = '\n[[events]]\nid = "x"\ntitle = "Họp"\nstart = 2026-12-15T08:00:00\n' \
            'participants = "49"\n'
    with pytest.raises(ConfigError, match="duplicate event id 'x'"):
        load(block + block)


def _event(start: datetime, pretests: str = '["24h", "2h", "30m"]'):  # type: ignore[no-untyped-def]
    return load(f'''
[[events]]
id = "e"
title = "Họp"
start = {start.strftime("%Y-%m-%dT%H:%M:%S")}
participants = "49"
pretests = {pretests}
''').events


def test_upcoming_lists_only_future_pretests_in_order() -> None:
    events = _event(datetime(2026, 12, 15, 8, 0))
    now = datetime(2026, 12, 15, 5, 0, tzinfo=ZONE)  # past T-24h, before T-2h
    due = upcoming(events, now)
    assert [p.offset for p in due] == [7200.0, 1800.0]
    assert due[0].job_id == "pretest:e:7200"


def test_missed_pretest_runs_once_if_nothing_ran_since() -> None:
    events = _event(datetime(2026, 12, 15, 8, 0))
    now = datetime(2026, 12, 15, 7, 0, tzinfo=ZONE)  # T-2h is past, T-30m ahead
    (late,) = missed(events, now, {})
    assert late.offset == 7200.0
    ran_after = {"e": datetime(2026, 12, 15, 6, 5, tzinfo=ZONE)}
    assert missed(events, now, ran_after) == []
    ran_before = {"e": datetime(2026, 12, 14, 8, 1, tzinfo=ZONE)}  # only the T-24h run
    assert [p.offset for p in missed(events, now, ran_before)] == [7200.0]


def test_nothing_is_missed_once_the_event_has_started() -> None:
    events = _event(datetime(2026, 12, 15, 8, 0))
    assert missed(events, datetime(2026, 12, 15, 8, 1, tzinfo=ZONE), {}) == []
    assert upcoming(events, datetime(2026, 12, 15, 8, 1, tzinfo=ZONE)) == []


# --------------------------------------------------------------------------- times that exist


def _everything_run_computes(event: Event) -> None:
    """What the daemon derives from an event's times: the API's JSON, the pre-test plan
    and its APScheduler date jobs, the metrics' window test and the status page's clock."""
    event_json(event)
    for now in (event.start - timedelta(days=400), event.start, event.end):
        upcoming((event,), now)
        missed((event,), now, {event.id: event.start})
    for _, when in event.pretest_times():
        DateTrigger(run_date=when).get_next_fire_time(None, when)
        when.astimezone(UTC).timestamp()
    for instant in (event.start, event.end):
        instant.timestamp()
        instant.astimezone(ZONE).strftime("%H:%M %d/%m/%Y")


@pytest.mark.parametrize(
    ("start", "timezone"),
    [
        ("2000-01-01T00:00:00+14:00", "Pacific/Kiritimati"),
        ("2000-01-01T00:00:00", "Pacific/Kiritimati"),
        ("2099-12-31T23:59:59-12:00", "Etc/GMT+12"),
        ("2099-12-31T23:59:59", "Etc/GMT+12"),
    ],
)
def test_the_extreme_accepted_events_compute_every_time(start: str, timezone: str) -> None:
    (event,) = load(f'''
[[events]]
id = "bien"
title = "Họp ở biên"
start = {start}
timezone = "{timezone}"
duration = "7d"
participants = "49"
pretests = ["366d", "1d", "1ms"]
''').events
    assert [offset for offset, _ in event.pretest_times()] == [366 * 86400.0, 86400.0, 0.001]
    _everything_run_computes(event)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("start = 9999-12-31T23:00:00", "start", "the year 9999 is out of range"),
        ("start = 0001-01-01T00:00:00+14:00", "start", "the year 1 is out of range"),
        ("start = 0001-01-01T00:00:00", "start", "the year 1 is out of range"),
        ('start = "1999-12-31T23:59:59"', "start", "the year 1999 is out of range"),
        ("start = 2100-01-01T00:00:00", "start", "the year 2100 is out of range"),
        ('start = 2026-12-15T08:00:00\npretests = ["99999999999d"]', "pretests[0]",
         "at most 366d"),
        ("start = 2026-12-15T08:00:00\npretests = [1" + "0" * 400 + "]", "pretests[0]",
         "at most 366d"),
        ('start = 2026-12-15T08:00:00\nduration = "8d"', "duration", "less than or equal"),
    ],
)
def test_times_that_would_overflow_are_refused_at_load(
    body: str, field: str, message: str
) -> None:
    # Each of these either crashed the loader (OverflowError) or passed check-config and
    # then killed `run` when it planned the pre-tests.
    text = f'\n[[events]]\nid = "x"\ntitle = "Họp"\nparticipants = "49"\n{body}\n'
    with pytest.raises(ConfigError) as caught:
        load(text)
    (issue,) = caught.value.issues
    assert issue.field == f"events[0].{field}" and message in issue.message
    assert issue.path == "ev.toml" and issue.line > 0


_ZONES = ["Asia/Ho_Chi_Minh", "Pacific/Kiritimati", "Etc/GMT+12", "UTC"]
_DURATIONS = st.one_of(
    st.integers(min_value=0, max_value=10**30),
    st.sampled_from(['"366d"', '"367d"', '"99999999999d"', '"7d"', '"1ms"', "1e400", "0.5"]),
)


@given(
    start=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    offset=st.one_of(st.none(), st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)),
    timezone=st.sampled_from(_ZONES),
    duration=_DURATIONS,
    pretests=st.lists(_DURATIONS, max_size=3),
)
@example(start=datetime(1, 1, 1), offset=14 * 60, timezone="UTC", duration='"1ms"', pretests=[])
@example(start=datetime(9999, 12, 31, 23, 59), offset=-12 * 60, timezone="UTC",
         duration='"7d"', pretests=[])
@example(start=datetime(2026, 12, 15, 8), offset=None, timezone="UTC", duration='"1h"',
         pretests=['"99999999999d"'])
@settings(max_examples=150, deadline=None)
def test_an_event_is_refused_at_load_or_computes_every_time(
    start: datetime, offset: int | None, timezone: str, duration: str | int,
    pretests: list[str | int],
) -> None:
    written = start.replace(microsecond=0).isoformat()
    if offset is not None:
        sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
        written += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    text = (f'\n[[events]]\nid = "x"\ntitle = "Họp"\nparticipants = "49"\nstart = {written}\n'
            f'timezone = "{timezone}"\nduration = {duration}\n'
            f"pretests = [{', '.join(str(p) for p in pretests)}]\n")
    try:
        config = load(text)
    except ConfigError as caught:
        assert all(issue.path == "ev.toml" and issue.line > 0 for issue in caught.issues)
        return
    for event in config.events:
        _everything_run_computes(event)


def test_an_event_naming_a_site_with_its_own_error_is_not_told_it_is_unknown() -> None:
    text = inventory_toml(SITES, port=9, extra='''
[[events]]
id = "hn"
title = "Họp"
start = 2026-12-15T08:00:00
participants = "under:502"
''').replace('"127.0.0.2"', '"127.0.0.999"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("ev.toml"))
    assert [issue.field for issue in caught.value.issues] == ["sites[1].address"]


def test_build_event_reports_times_it_cannot_compute_instead_of_raising() -> None:
    # The API and the loader validate first; this is the net under them: a model that
    # skipped validation (9999-12-31T23:00 plus 2 h) is reported, not an OverflowError.
    inventory = load("").inventory
    model = EventModel.model_construct(
        id="x", title="Họp", start=datetime(9999, 12, 31, 23, 0), timezone="UTC",
        duration=7200.0, participants="49", pretests=[1800.0], count=None,
    )
    problems: list[tuple[tuple[str | int, ...], str]] = []
    assert build_event(model, inventory, lambda loc, msg: problems.append((loc, msg)),
                       ("events", 0)) is None
    ((loc, message),) = problems
    assert loc == ("events", 0, "start") and "cannot be computed" in message
