"""Events and test runs through the daemon: API rules, scheduling, history, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from tests.conftest import free_port, needs_root
from tests.helpers import aget, ascrape, await_for, value, write_inventory

pytestmark = needs_root
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "s3cret-token-for-tests-only"
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.64.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.64.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.64.2.10"},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "127.64.2.11"},
]
FAST_TESTS = '\n[test]\ncount = 3\nspacing = "50ms"\ntimeout = "500ms"\n'

Starter = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    running: list[Monitor] = []

    async def starter(extra: str = "", token: bool = True) -> Monitor:
        api = f'\n[api]\ntoken = "{TOKEN}"\n' if token else ""
        path = write_inventory(tmp_path / "sites.toml", SITES, port=free_port(),
                               interval="5s", extra=FAST_TESTS + api + extra)
        text = path.read_text(encoding="utf-8").replace(
            "[monitor]\n", f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n', 1)
        path.write_text(text, encoding="utf-8")
        monitor = Monitor(load_config(path))
        await monitor.start()
        running.append(monitor)
        return monitor

    yield starter
    for monitor in running:
        await monitor.stop()


def url(monitor: Monitor, path: str) -> str:
    assert monitor.bound is not None
    return f"http://127.0.0.1:{monitor.bound[1]}{path}"


async def post(monitor: Monitor, path: str, body: object, token: str | None = TOKEN,
               raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(
        url(monitor, path), data=data, headers=headers
    ) as response:
        return response.status, await response.json()


async def finished(monitor: Monitor, run_id: str) -> dict[str, Any]:
    async def done() -> bool:
        status, body = await aget(url(monitor, f"/api/v1/test-runs/{run_id}"))
        return status == 200 and json.loads(body)["status"] == "complete"

    await await_for(done, 20, f"test run {run_id} to finish")
    return json.loads((await aget(url(monitor, f"/api/v1/test-runs/{run_id}")))[1])


async def test_mutating_calls_need_the_token(start: Starter) -> None:
    monitor = await start()
    status, body = await post(monitor, "/api/v1/test-runs", {"select": "49"}, token=None)
    assert status == 401 and "Bearer" in body["error"]
    status, _ = await post(monitor, "/api/v1/test-runs", {"select": "49"}, token="wrong")
    assert status == 401
    status, body = await post(monitor, "/api/v1/test-runs", {"select": "under:502"})
    assert status == 202 and body["sites"] == 3
    report = await finished(monitor, body["run_id"])
    assert report["trigger"] == "api" and report["summary"]["ready"] == 3
    status, page = await aget(url(monitor, f"/api/v1/test-runs/{body['run_id']}?format=html"))
    assert status == 200 and "Phường Tân Thạnh".encode() in page
    status, _ = await aget(url(monitor, f"/api/v1/test-runs/{body['run_id']}?format=pdf"))
    assert status == 400


async def test_without_a_configured_token_the_api_is_refused_not_open(start: Starter) -> None:
    monitor = await start(token=False)
    status, body = await post(monitor, "/api/v1/test-runs", {"select": "49"}, token="anything")
    assert status == 403 and "token" in body["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"select": "under:999"}, "select"),
        ({"select": "127.0.0.1"}, "select"),  # an address is not a site: no probing it
        ({"select": "http://127.0.0.1:22/"}, "select"),
        ({"event": "no-such-event"}, "event"),
        ({"select": "49", "event": "x"}, "select"),
        ({}, "select"),
        ({"select": "49", "address": "127.0.0.1"}, "address"),
        ({"select": "49", "count": 0}, "count"),
        ({"select": "49", "count": "5"}, "count"),
        ({"select": ["49"]}, "select"),
    ],
)
async def test_bad_bodies_name_the_field(start: Starter, body: dict[str, Any],
                                         field: str) -> None:
    monitor = await start()
    status, answer = await post(monitor, "/api/v1/test-runs", body)
    assert status == 400 and answer["field"] == field, answer


async def test_a_body_that_is_not_json_is_a_400(start: Starter) -> None:
    monitor = await start()
    status, answer = await post(monitor, "/api/v1/test-runs", None, raw=b"select=49")
    assert status == 400 and answer["field"] == "body"


async def test_events_added_through_the_api_persist_and_are_validated(start: Starter) -> None:
    monitor = await start()
    event = {"id": "hn-tam-ky", "title": "Giao ban trực tuyến Tam Kỳ",
             "start": (datetime.now(ZONE) + timedelta(days=2)).isoformat(),
             "participants": "under:502"}
    status, body = await post(monitor, "/api/v1/events", event)
    assert status == 201 and body["participants"] == ["502", "20335", "20338"]
    status, body = await post(monitor, "/api/v1/events", event)
    assert status == 400 and body["field"] == "id"
    status, body = await post(monitor, "/api/v1/events", {**event, "id": "x2",
                                                          "participants": "under:7"})
    assert status == 400 and body["field"] == "participants"
    status, body = await post(monitor, "/api/v1/events", {**event, "id": "x3",
                                                          "start": "mai"})
    assert status == 400 and body["field"] == "start"
    status, _ = await post(monitor, "/api/v1/events", event, token=None)
    assert status == 401
    await monitor.stop()
    again = await start()  # same state directory
    events = json.loads((await aget(url(again, "/api/v1/events")))[1])["events"]
    assert [e["id"] for e in events] == ["hn-tam-ky"] and events[0]["source"] == "api"


async def delete(monitor: Monitor, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.delete(
        url(monitor, path), headers=headers
    ) as response:
        return response.status, await response.json()


async def test_events_added_through_the_api_can_be_removed(start: Starter) -> None:
    in_file = {"id": "in-file", "title": "Giao ban", "participants": "502",
               "start": (datetime.now(ZONE) + timedelta(days=3)).isoformat()}
    monitor = await start("\n[[events]]\n" + "".join(f'{key} = "{value}"\n'
                                                      for key, value in in_file.items()))
    event = {"id": "hop-huy", "title": "Họp sẽ huỷ",
             "start": (datetime.now(ZONE) + timedelta(days=2)).isoformat(),
             "participants": "under:502", "pretests": ["1h"]}
    status, _ = await post(monitor, "/api/v1/events", event)
    assert status == 201
    assert [job for job, _ in monitor.scheduler.planned("pretest:hop-huy")]
    assert (await delete(monitor, "/api/v1/events/hop-huy", token=None))[0] == 401
    status, body = await delete(monitor, "/api/v1/events/hop-huy")
    assert status == 200 and body["removed"]["id"] == "hop-huy"
    assert body["removed"]["title"] == "Họp sẽ huỷ"
    assert not monitor.scheduler.planned("pretest:hop-huy")  # its pre-test is not planned
    status, body = await delete(monitor, "/api/v1/events/hop-huy")
    assert status == 404 and body["field"] == "id"
    # One of the inventory is removed in the file: the API says where.
    status, body = await delete(monitor, "/api/v1/events/in-file")
    assert status == 409 and "sites.toml" in body["error"]
    status, _ = await post(monitor, "/api/v1/events", event)  # the id is free again
    assert status == 201
    await delete(monitor, "/api/v1/events/hop-huy")
    await monitor.stop()
    again = await start()  # same state directory: the removal was saved
    events = json.loads((await aget(url(again, "/api/v1/events")))[1])["events"]
    assert "hop-huy" not in [e["id"] for e in events]


async def test_the_events_kept_are_bounded(start: Starter,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from bridgemon.testrun import saved_events

    monkeypatch.setattr(saved_events, "MAX_SAVED", 3)
    monitor = await start()
    begins = (datetime.now(ZONE) + timedelta(days=2)).isoformat()
    for index in range(3):
        status, _ = await post(monitor, "/api/v1/events", {
            "id": f"e{index}", "title": "Họp", "start": begins, "participants": "502"})
        assert status == 201
    status, body = await post(monitor, "/api/v1/events", {
        "id": "e3", "title": "Họp", "start": begins, "participants": "502"})
    assert status == 409 and "DELETE /api/v1/events/ID" in body["error"]
    assert (await delete(monitor, "/api/v1/events/e0"))[0] == 200
    status, _ = await post(monitor, "/api/v1/events", {
        "id": "e3", "title": "Họp", "start": begins, "participants": "502"})
    assert status == 201


async def test_pretests_run_at_their_offsets_and_feed_the_metrics(start: Starter) -> None:
    begins = datetime.now(ZONE) + timedelta(seconds=8)
    monitor = await start(f'''
[[events]]
id = "giao-ban"
title = "Giao ban trực tuyến"
start = "{begins.isoformat()}"
duration = "1h"
participants = "under:502"
pretests = ["6s", "3s"]
''')

    async def two_runs() -> bool:
        body = json.loads((await aget(url(monitor, "/api/v1/test-runs?event=giao-ban")))[1])
        runs = body["test_runs"]
        return len(runs) == 2 and all(run["status"] == "complete" for run in runs)

    await await_for(two_runs, 20, "the T-6s and T-3s pre-tests")
    runs = json.loads((await aget(url(monitor, "/api/v1/test-runs?event=giao-ban")))[1])
    assert {run["trigger"] for run in runs["test_runs"]} == {"schedule"}
    samples = await ascrape(url(monitor, "/metrics"))
    assert value(samples, "bridgemon_event_start_timestamp_seconds",
                 event="giao-ban") == pytest.approx(begins.timestamp(), abs=1)
    assert value(samples, "bridgemon_event_participant", event="giao-ban", site="20335") == 1
    assert value(samples, "bridgemon_testrun_site_ready", event="giao-ban", site="20338") == 1
    assert value(samples, "bridgemon_testrun_sites", event="giao-ban", verdict="ready") == 3
    assert not [lb for lb, _ in samples["bridgemon_event_participant"] if lb["site"] == "49"]


async def test_a_missed_pretest_runs_once_on_start(start: Starter) -> None:
    begins = datetime.now(ZONE) + timedelta(minutes=30)
    events = f'''
[[events]]
id = "hop-gap"
title = "Họp gấp"
start = "{begins.isoformat()}"
participants = "502"
pretests = ["1h", "2h"]
'''
    monitor = await start(events)

    def one_run(on: Monitor) -> Callable[[], Any]:
        async def check() -> bool:
            body = json.loads((await aget(url(on, "/api/v1/test-runs?event=hop-gap")))[1])
            runs = body["test_runs"]
            return len(runs) == 1 and runs[0]["status"] == "complete"

        return check

    await await_for(one_run(monitor), 15, "the missed pre-test")
    await monitor.stop()
    again = await start(events)
    await asyncio.sleep(2)  # time enough for a wrong second catch-up run to show
    assert await one_run(again)()
    assert again.testruns is not None and "hop-gap" in again.testruns.latest


async def test_pretests_are_replanned_on_reload(start: Starter) -> None:
    first = datetime.now(ZONE).replace(microsecond=0) + timedelta(days=3)
    block = """
[[events]]
id = "ky-hop"
title = "Kỳ họp HĐND tỉnh"
start = "{start}"
participants = "49"
pretests = ["24h", "2h"]
"""
    monitor = await start(block.format(start=first.isoformat()))
    assert monitor.scheduler is not None
    planned = monitor.scheduler.planned("pretest:")
    assert [when for _, when in planned] == [first - timedelta(hours=24),
                                             first - timedelta(hours=2)]
    moved = first + timedelta(days=1)
    path = monitor.config.path
    path.write_text(path.read_text(encoding="utf-8").replace(first.isoformat(),
                                                             moved.isoformat()),
                    encoding="utf-8")
    outcome = await monitor.reload()
    assert outcome.ok
    assert [when for _, when in monitor.scheduler.planned("pretest:")] == [
        moved - timedelta(hours=24), moved - timedelta(hours=2)]
    path.write_text(path.read_text(encoding="utf-8").replace('participants = "49"',
                                                             'participants = "4999"'),
                    encoding="utf-8")
    assert not (await monitor.reload()).ok  # a bad reload keeps the plan
    assert len(monitor.scheduler.planned("pretest:")) == 2


async def test_an_event_added_inside_its_first_offset_is_tested_at_once(start: Starter) -> None:
    monitor = await start()
    soon = {"id": "hop-gap", "title": "Họp gấp", "participants": "502",
            "start": (datetime.now(ZONE) + timedelta(minutes=10)).isoformat(),
            "pretests": ["1h", "30m"]}
    later = {**soon, "id": "hop-sau", "start": (datetime.now(ZONE) + timedelta(days=2))
             .isoformat()}
    for event in (soon, later):
        status, body = await post(monitor, "/api/v1/events", event)
        assert status == 201, body

    async def runs(event_id: str) -> list[dict[str, Any]]:
        raw = (await aget(url(monitor, f"/api/v1/test-runs?event={event_id}")))[1]
        return list(json.loads(raw)["test_runs"])

    async def tested() -> bool:
        found = await runs("hop-gap")
        return len(found) == 1 and found[0]["status"] == "complete"

    await await_for(tested, 15, "the pre-test of the event added 10 minutes before it")
    assert (await runs("hop-gap"))[0]["trigger"] == "schedule"
    assert await runs("hop-sau") == []  # its pre-tests are ahead: planned, not run
    assert monitor.scheduler is not None
    assert [job for job, _ in monitor.scheduler.planned("pretest:hop-sau")] == [
        "pretest:hop-sau:3600", "pretest:hop-sau:1800"]
