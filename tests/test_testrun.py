"""The test-run engine in-process on loopback: plans, parents first, judging a long burst."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.inventory import national_inventory
from bridgemon.config import parse_config
from bridgemon.inventory import SelectorError
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.testrun.history import EncodedSite, History
from bridgemon.testrun.plan import Planning, plan_in_steps, plan_test
from bridgemon.testrun.run import all_ready, run_and_store, run_test
from tests.conftest import needs_root
from tests.helpers import inventory_toml

SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.65.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.65.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.65.2.10"},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "127.65.2.11"},
]


def inventory(interval: str = "30s"):  # type: ignore[no-untyped-def]
    text = inventory_toml(SITES, port=9, interval=interval, count=1, spacing="10ms",
                          timeout="200ms")
    return parse_config(text, Path("t.toml")).inventory


def plan(selector: str, count: int = 3):  # type: ignore[no-untyped-def]
    return plan_test(inventory(), selector=selector, count=count, spacing=0.05, timeout=0.5,
                     concurrency=10, trigger="cli", operator="kỹ thuật viên")


def test_plan_probes_unselected_parents_for_context() -> None:
    chosen = plan("level:commune")
    assert [s.id for s in chosen.sites] == ["20335", "20338"]
    assert sorted(s.id for s in chosen.context) == ["49", "502"]
    assert plan("under:502").context[0].id == "49"
    with pytest.raises(SelectorError):
        plan("under:7")


@pytest.mark.parametrize("selector", ["*", "level:commune", "under:p3", "d5,c7"])
def test_a_national_plan_is_made_a_slice_at_a_time(selector: str) -> None:
    # The daemon plans on its loop, pausing every thousand sites or so (a national plan
    # took 10-20 ms in one go): the same plan as in one go, in as many slices as it needs.
    sites = parse_config(national_inventory(6000, port=9), Path("n.toml")).inventory
    what: Planning = {"selector": selector, "count": 3, "spacing": 0.05, "timeout": 0.5,
                      "concurrency": 10, "trigger": "cli", "operator": "kỹ thuật viên"}
    steps = plan_in_steps(sites, **what)
    pauses = 0
    while True:
        try:
            next(steps)
            pauses += 1
        except StopIteration as done:
            sliced = done.value
            break
    whole = plan_test(sites, **what)
    assert [s.id for s in sliced.sites] == [s.id for s in whole.sites]
    assert [s.id for s in sliced.context] == [s.id for s in whole.context]
    assert pauses >= 6  # the inventory's 6,000 sites are gone through a thousand at a time
    if selector == "level:commune":  # every province and district, for parent_down
        assert {s.level for s in sliced.context} == {"province", "district"}


@needs_root
async def test_a_long_burst_on_a_fast_interval_site_is_judged_not_stale() -> None:
    # A 1 s round interval, and a test burst of 40 echoes 100 ms apart (4.4 s): judged
    # against the round's burst it would look like a site not probed for 3 intervals.
    sites = inventory(interval="1s")
    the_plan = plan_test(sites, selector="under:502", count=40, spacing=0.1, timeout=0.5,
                         concurrency=10, trigger="cli", operator="kỹ thuật viên")
    order: list[str] = []
    pinger = Pinger("raw")
    try:
        report = await run_test(the_plan, sites, ProbeContext(pinger=pinger),
                                on_site=lambda site: order.append(site["id"]))
    finally:
        pinger.close()
    assert [site["verdict"] for site in report["sites"]] == ["ready"] * 3, report["sites"]
    assert report["sites"][1]["checks"][0]["sent"] == 40
    assert order[0] == "502"  # a parent is final before its children
    assert all_ready(report) and report["summary"]["ready"] == 3


@needs_root
@pytest.mark.parametrize("writer", [None, "thread"], ids=["inline", "writer thread"])
async def test_run_and_store_keeps_the_run_as_it_goes(tmp_path: Path, writer: str | None) -> None:
    # The one way a run is stored, for `bridgemon test` (inline) and the daemon (its writer
    # thread): the history gives back exactly the report the run returned.
    sites = inventory()
    executor = ThreadPoolExecutor(max_workers=1) if writer else None
    history = History(tmp_path / "bridgemon.db")
    the_plan = plan("under:502")
    seen: list[str] = []
    pinger = Pinger("raw")
    try:
        report = await run_and_store(the_plan, sites, ProbeContext(pinger=pinger), history,
                                     writer=executor, on_site=lambda s: seen.append(s["id"]))
    finally:
        pinger.close()
        if executor is not None:
            executor.shutdown(wait=True)
    assert seen == [site["id"] for site in report["sites"]] and len(seen) == 3
    assert report["status"] == "complete"
    assert history.get(the_plan.run_id) == report


@needs_root
@pytest.mark.parametrize("writer", [None, "thread"], ids=["inline", "writer thread"])
async def test_run_and_store_marks_a_cancelled_run_incomplete_with_its_finished_sites(
    tmp_path: Path, writer: str | None,
) -> None:
    sites = inventory()
    executor = ThreadPoolExecutor(max_workers=1) if writer else None
    history = History(tmp_path / "bridgemon.db")
    # One site at a time, 0.2 s each: the district is judged first (parents first), and
    # the cancellation lands while its communes are still being probed.
    the_plan = replace(plan("under:502", count=5), concurrency=1)
    first = asyncio.Event()
    pinger = Pinger("raw")
    try:
        task = asyncio.ensure_future(run_and_store(
            the_plan, sites, ProbeContext(pinger=pinger), history, writer=executor,
            on_site=lambda site: first.set()))
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        pinger.close()
        if executor is not None:
            executor.shutdown(wait=True)
    stored = history.get(the_plan.run_id)
    assert stored is not None and stored["status"] == "incomplete"
    assert 1 <= len(stored["sites"]) < 3 and stored["sites"][0]["id"] == "502"


@needs_root
async def test_the_daemon_stores_a_run_in_batches_as_it_goes(tmp_path: Path) -> None:
    # With the daemon's writer thread, judged sites are stored a batch at a time (one
    # transaction per site kept the thread, and the GIL, busy long after a national run),
    # yet soon: a batch waits at most half a second, so the history shows a run's progress.
    many = SITES[:2] + [
        {"id": f"c{i}", "name": f"Xã số {i}", "level": "commune", "parent": "502",
         "address": f"127.66.0.{i + 1}"} for i in range(59)]
    sites = parse_config(inventory_toml(many, port=9, count=1, spacing="10ms",
                                        timeout="200ms"), Path("t.toml")).inventory
    # Ten at a time, 0.3 s each (3 echoes 0.1 s apart): about two seconds in all.
    the_plan = plan_test(sites, selector="*", count=3, spacing=0.1, timeout=0.5,
                         concurrency=10, trigger="cli", operator="kỹ thuật viên")
    batches: list[int] = []

    class Counted(History):
        def add_sites(self, run_id: str, sites: Sequence[EncodedSite]) -> None:
            batches.append(len(sites))
            super().add_sites(run_id, sites)

    history = Counted(tmp_path / "bridgemon.db")
    executor = ThreadPoolExecutor(max_workers=1)
    pinger = Pinger("raw")
    progress: list[int] = []
    try:
        run = asyncio.ensure_future(run_and_store(the_plan, sites, ProbeContext(pinger=pinger),
                                                  history, writer=executor))
        while not run.done():
            await asyncio.sleep(0.25)
            got = history.get(the_plan.run_id)
            progress.append(len(got["sites"]) if got else 0)
        report = await run
    finally:
        pinger.close()
        executor.shutdown(wait=True)
    assert report["summary"]["ready"] == 61
    assert history.get(the_plan.run_id) == report
    assert sum(batches) == 61 and len(batches) <= 8, batches
    assert any(0 < stored < 61 for stored in progress), progress  # stored as it went


@needs_root
async def test_a_background_run_keeps_its_sites_in_the_history_only(tmp_path: Path) -> None:
    # The daemon's runs from the API keep no site in memory (48 MB at 12,000 sites): the
    # report it gets back lists none, the history has every one.
    sites = inventory()
    history = History(tmp_path / "bridgemon.db")
    executor = ThreadPoolExecutor(max_workers=1)
    the_plan = plan("*")
    stored: list[str] = []
    pinger = Pinger("raw")
    try:
        report = await run_and_store(the_plan, sites, ProbeContext(pinger=pinger), history,
                                     writer=executor, keep_sites=False,
                                     on_site=lambda site: stored.append(site["id"]))
    finally:
        pinger.close()
        executor.shutdown(wait=True)
    assert report["sites"] == [] and report["summary"]["total"] == 4
    kept = history.get(the_plan.run_id)
    assert kept is not None and kept["status"] == "complete"
    assert [site["id"] for site in kept["sites"]] == stored == ["49", "502", "20335", "20338"]
    assert kept["summary"] == report["summary"]
