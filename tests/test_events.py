"""Events in the inventory and the planning of their pre-tests (pure: no sockets)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridgemon.config import ConfigError, parse_config
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
