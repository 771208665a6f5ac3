"""Fuzz regression of the web API against a real ``bridgemon run``: no body, query or path
gets a 500, and whatever the API accepted never keeps the daemon from reloading or
starting again. Bounded: a few seconds each."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port, needs_root
from tests.daemon_process import Daemon
from tests.helpers import write_inventory

pytestmark = needs_root
TOKEN = "s3cret-token-for-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.68.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.68.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.68.2.10"},
]
EXTRA = (f'\n[api]\ntoken = "{TOKEN}"\n'
         '\n[test]\ncount = 2\nspacing = "20ms"\ntimeout = "300ms"\n')
FUZZ = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = free_port()
    yield write_inventory(tmp_path / "sites.toml", SITES, port=port, interval="5s",
                          extra=EXTRA), port


starts = st.builds(
    lambda moment, zone: moment.isoformat() + zone,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(["", "Z", "+07:00", "+14:00", "-12:00", "-05:00"]),
)
durations = st.one_of(
    st.sampled_from(["3h", "30m", "7d", "8d", "1e400", "-1h", "0", "99999999999d"]),
    st.floats(), st.integers(-10, 10**20),
)
offsets = st.one_of(
    st.sampled_from(["24h", "2h", "30m", "99999999999d", "1e400", "0.001ms", "36500d",
                     "3650000d"]),
    st.floats(), st.integers(0, 10**20),
)
events = st.fixed_dictionaries(
    {"title": st.just("Hội nghị trực tuyến"), "start": starts,
     "participants": st.sampled_from(["49", "under:502", ["502", "20335"]])},
    optional={"duration": durations, "pretests": st.lists(offsets, max_size=4),
              "timezone": st.sampled_from(["Asia/Ho_Chi_Minh", "UTC", "Pacific/Kiritimati",
                                           "Etc/GMT+12"])},
)


def test_no_event_body_breaks_the_api_a_reload_or_a_restart(config: tuple[Path, int]) -> None:
    path, port = config
    daemon = Daemon(path, port, path.parent / "bridgemon.log")
    ids = itertools.count()
    accepted: list[str] = []

    @FUZZ
    @given(event=events)
    def add(event: dict[str, Any]) -> None:
        event = {**event, "id": f"fuzz-{next(ids)}"}
        status, body = daemon.json("POST", "/api/v1/events", event, AUTH)
        assert status in (201, 400), (status, body, event)
        if status == 400:
            assert body["field"] and body["error"]
        else:
            accepted.append(event["id"])
        status, _, _ = daemon.request("GET", "/api/v1/events")
        assert status == 200, event

    try:
        add()
        for page in ("/", "/metrics", "/healthz", "/api/v1/events"):
            assert daemon.request("GET", page)[0] == 200, page
        status, body = daemon.json("POST", "/-/reload", None, AUTH)
        assert status == 200 and body["ok"], body
    finally:
        daemon.stop()
    again = Daemon(path, port, path.parent / "again.log")  # same state directory
    try:
        status, body = daemon_events(again)
        assert status == 200 and sorted(body) == sorted(accepted)
        assert "bad-" not in again.log()  # nothing it saved had to be set aside
    finally:
        again.stop()


def daemon_events(daemon: Daemon) -> tuple[int, list[str]]:
    status, _, raw = daemon.request("GET", "/api/v1/events")
    return status, [event["id"] for event in json.loads(raw)["events"]]


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
raw_bytes = st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe=""))


def test_no_query_or_path_gets_a_500(config: tuple[Path, int]) -> None:
    path, port = config
    daemon = Daemon(path, port, path.parent / "bridgemon.log")

    @FUZZ
    @given(
        route=st.sampled_from(["/", "/api/v1/sites", "/api/v1/sites/{}", "/api/v1/test-runs",
                               "/api/v1/test-runs/{}", "/api/v1/events", "/healthz",
                               "/metrics", "/{}", "/sites/{}", "/events/{}",
                               "/test-runs/{}", "/static/{}"]),
        segment=st.one_of(texts.map(lambda t: quote(t, safe="")), raw_bytes),
        params=st.dictionaries(
            st.sampled_from(["select", "verdict", "offset", "limit", "page", "q", "event",
                             "format", "district", "live", "seen"]),
            # 1,500 digits: past int()'s limits on digits within aiohttp's 8 KB request line
            st.one_of(texts, st.sampled_from(["", "-1", "9" * 1500, "under:502", "*"])),
            max_size=4,
        ),
        raw_query=raw_bytes,
    )
    def get(route: str, segment: str, params: dict[str, str], raw_query: str) -> None:
        target = route.format(segment or "x") + "?" + urlencode(params) + "&q=" + raw_query
        status, headers, body = daemon.request("GET", target)
        assert status < 500, (target[:300], status, body[:300])
        if status >= 400:
            # The technicians' pages answer a browser with a page, the API with JSON; so
            # does aiohttp's router, for a path no route takes ("/sites/{").
            kind = headers["Content-Type"]
            page = route in ("/", "/sites/{}", "/events/{}", "/test-runs/{}")
            assert kind.startswith("application/json") or (
                page and kind.startswith("text/html")), target[:300]
            if page and kind.startswith("application/json"):
                assert status == 404 and b"Not Found" in body, target[:300]

    try:
        get()
    finally:
        daemon.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts
    | st.sampled_from(["49", "*", "under:502", "", " ", ",", "level:commune"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)


def test_no_test_run_body_gets_a_500(config: tuple[Path, int]) -> None:
    path, port = config
    daemon = Daemon(path, port, path.parent / "bridgemon.log")

    @FUZZ
    @given(body=st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["select", "event", "count", "address"]), json_values,
                        max_size=3),
    ))
    def start_run(body: Any) -> None:
        status, answer = daemon.json("POST", "/api/v1/test-runs", body, AUTH)
        assert status in (202, 400), (status, answer, body)
        if status == 400:  # the field is the key as sent, which may be ""
            assert isinstance(answer["field"], str) and answer["error"]

    try:
        start_run()
    finally:
        daemon.stop()
