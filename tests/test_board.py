"""The board: verdicts judged once as rounds complete, and what readers see of them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from bridgemon.board import Board
from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from bridgemon.inventory import Inventory, Level
from bridgemon.readiness import judge_all
from bridgemon.verdicts import State
from bridgemon.views import site_json
from bridgemon.windows import WindowStore
from tests.helpers import write_inventory
from tests.test_windows import icmp_round, make_site

NOW = 100_000.0
LEVELS = (
    Level("province", "Cấp tỉnh", "default", ()),
    Level("district", "Cấp huyện", "default", ("province",)),
    Level("commune", "Cấp xã", "default", ("district",)),
)


def tree() -> Inventory:
    commune = make_site("20335", "Phường Tân Thạnh", "502", "127.49.2.10")
    commune = dataclasses.replace(commune, level="commune")
    sites = [
        make_site("49", "UBND tỉnh Quảng Nam", None, "127.49.0.1"),
        make_site("502", "Thành phố Tam Kỳ", "49", "127.49.2.1"),
        commune,
        make_site("516", "Huyện Nam Trà My", "49", "127.49.16.1"),
    ]
    return Inventory(levels=LEVELS, sites={site.id: site for site in sites})


UP = (0.01, 0.01, 0.01)
DOWN = (None, None, None)


def setup() -> tuple[Inventory, WindowStore, Board]:
    inventory = tree()
    state = WindowStore(window=3)
    state.sync(inventory, 3)
    board = Board()
    board.sync(inventory, state.sites, NOW)
    return inventory, state, board


def record(inventory: Inventory, state: WindowStore, board: Board, site_id: str,
           rtts: tuple[float | None, ...], at: float) -> None:
    site = inventory.sites[site_id]
    assert state.record(site_id, site.probe_key(), icmp_round(at, site.address, rtts))
    board.update(site_id, at)


def states(board: Board) -> dict[str, State]:
    return {site_id: view.verdict.state for site_id, view in board.views.items()}


def test_never_probed_sites_are_unknown_and_every_site_has_a_view() -> None:
    _, _, board = setup()
    assert states(board) == dict.fromkeys(("49", "502", "20335", "516"), State.UNKNOWN)
    assert all(view.series and view.row for view in board.views.values())


def test_a_recorded_round_is_judged_at_once_and_rendered() -> None:
    inventory, state, board = setup()
    before = board.views["502"]
    record(inventory, state, board, "502", UP, NOW)
    view = board.views["502"]
    assert view.verdict.state == State.READY and view is not before
    assert view.echoes == (3, 3)
    assert json.loads(view.row) == json.loads(json.dumps(
        site_json(inventory.sites["502"], view.verdict, view.latest)))
    assert b'bridgemon_site_state{site="502",state="ready"} 1.0' in b"".join(view.series)
    assert states(board)["49"] == State.UNKNOWN  # nothing else was judged


def test_a_parent_going_down_and_up_is_followed_down_the_tree() -> None:
    inventory, state, board = setup()
    for site_id in ("49", "502", "20335", "516"):
        record(inventory, state, board, site_id, UP, NOW)
    record(inventory, state, board, "20335", DOWN, NOW + 30)
    assert states(board)["20335"] == State.NOT_READY
    record(inventory, state, board, "502", DOWN, NOW + 31)
    # the commune failing under a district that is down is the district's fault...
    assert states(board)["502"] == State.NOT_READY
    assert states(board)["20335"] == State.PARENT_DOWN
    record(inventory, state, board, "49", DOWN, NOW + 32)
    assert states(board)["502"] == State.PARENT_DOWN  # ...and so on up
    assert states(board)["20335"] == State.PARENT_DOWN
    record(inventory, state, board, "49", UP, NOW + 60)
    assert states(board)["502"] == State.NOT_READY
    assert states(board)["20335"] == State.PARENT_DOWN
    record(inventory, state, board, "502", UP, NOW + 61)
    assert states(board)["20335"] == State.NOT_READY
    # the incremental verdicts are the ones judging everything afresh would give
    assert_judged_afresh_alike(inventory, state, board, NOW + 61)


def assert_judged_afresh_alike(inventory: Inventory, state: WindowStore, board: Board,
                               now: float) -> None:
    windows = {site_id: tuple(h.rounds) for site_id, h in state.sites.items()}
    fresh = judge_all(inventory, windows, now)
    assert {k: v.state for k, v in fresh.items()} == states(board)


def province_back_up_children_later() -> tuple[Inventory, WindowStore, Board]:
    """Everything down, then the province answers again, its children left for later."""
    inventory, state, board = setup()
    for site_id in ("49", "502", "20335", "516"):
        record(inventory, state, board, site_id, DOWN, NOW)
    assert states(board)["502"] == State.PARENT_DOWN
    site = inventory.sites["49"]
    assert state.record("49", site.probe_key(), icmp_round(NOW + 30, site.address, UP))
    board.update("49", NOW + 30, children_later=True)
    assert board.views["49"].verdict.up and board.cascading  # up again: no longer "down"
    return inventory, state, board


def test_children_left_for_later_are_judged_a_site_a_step_alike() -> None:
    # The daemon leaves a parent's children to cascade_in_steps (a province's 350
    # communes took 15-26 ms in one step); they end as judging them at once would.
    inventory, state, board = province_back_up_children_later()
    assert states(board)["502"] == State.PARENT_DOWN  # not yet
    steps = list(board.cascade_in_steps())
    assert not board.cascading
    assert len(steps) == 2  # 502 and 516 (502 stays "down": its commune keeps its verdict)
    assert {k: v for k, v in states(board).items() if k != "49"} == {
        "502": State.NOT_READY, "20335": State.PARENT_DOWN, "516": State.NOT_READY}
    assert_judged_afresh_alike(inventory, state, board, NOW + 30)


def test_a_sync_drops_the_cascade_of_the_inventory_it_replaces() -> None:
    inventory, state, board = province_back_up_children_later()
    steps = board.cascade_in_steps()
    next(steps)
    board.sync(inventory, state.sites, NOW + 31)  # judges every site afresh
    assert list(steps) == [] and not board.cascading
    assert states(board)["502"] == State.NOT_READY


def test_silence_is_found_by_the_sweep_not_by_readers() -> None:
    inventory, state, board = setup()
    for site_id in ("49", "502"):
        record(inventory, state, board, site_id, UP, NOW)
    interval = inventory.sites["49"].interval
    assert board.sweep(NOW + interval) == 0
    record(inventory, state, board, "502", UP, NOW + 3 * interval)  # 502 keeps answering
    stale_at = NOW + 3 * interval + inventory.sites["49"].longest_probe + 1
    assert board.sweep(stale_at) == 1
    assert states(board)["49"] == State.UNKNOWN
    assert [r.code for r in board.views["49"].verdict.reasons] == ["stale"]
    assert states(board)["502"] == State.READY
    # a stale verdict's age is refreshed later, and a probe ends it
    assert board.sweep(stale_at + 61) == 1
    record(inventory, state, board, "49", UP, stale_at + 62)
    assert states(board)["49"] == State.READY
    assert board.sweep(stale_at + 70) == 0


def test_the_sweep_keeps_one_deadline_per_site_however_many_rounds() -> None:
    # An entry per judgement piled up (37,000 at 12,000 sites) and every sweep popped the
    # obsolete ones: 4-9 ms of the loop each second.
    inventory, state, board = setup()
    interval = inventory.sites["49"].interval
    for n in range(20):
        for site_id in ("49", "502"):
            record(inventory, state, board, site_id, UP, NOW + n * interval)
    assert len(board._deadlines) == 2
    # the entries come up, find the sites probed since, and go back for later
    last = NOW + 19 * interval
    assert board.sweep(last + 2 * interval) == 0
    assert len(board._deadlines) == 2
    assert states(board) == {"49": State.READY, "502": State.READY,
                             "20335": State.UNKNOWN, "516": State.UNKNOWN}
    assert board.sweep(last + 3 * interval + inventory.sites["49"].longest_probe + 1) == 2
    assert states(board)["49"] == State.UNKNOWN


def test_a_whole_inventory_going_silent_is_swept_a_site_at_a_time() -> None:
    # The daemon drives the steps on the loop a slice at a time (cooperative.run): all
    # 12,000 sites going stale at once must not be one step.
    inventory, state, board = setup()
    for site_id in inventory.sites:
        record(inventory, state, board, site_id, UP, NOW)
    stale_at = NOW + 4 * inventory.sites["49"].interval + 60
    steps = board.sweep_in_steps(stale_at)
    pauses = 0
    try:
        while True:
            next(steps)
            pauses += 1
    except StopIteration as done:
        assert done.value == 4
    assert pauses == 4
    assert set(states(board).values()) == {State.UNKNOWN}


def test_a_reload_rejudges_against_the_new_inventory() -> None:
    inventory, state, board = setup()
    record(inventory, state, board, "502", UP, NOW)
    smaller = Inventory(levels=LEVELS, sites={k: v for k, v in inventory.sites.items()
                                              if k != "516"})
    state.sync(smaller, 3)
    board.sync(smaller, state.sites, NOW + 1)
    assert set(board.views) == {"49", "502", "20335"}
    assert states(board)["502"] == State.READY
    board.update("516", NOW + 2)  # a probe of a removed site that was in flight
    assert "516" not in board.views


def test_a_sync_that_fails_half_way_keeps_the_board_it_had() -> None:
    inventory, state, board = setup()
    record(inventory, state, board, "502", UP, NOW)
    before = dict(board.views)

    class Broken(dict[str, object]):
        def get(self, key: str, default: object = None) -> object:
            if key == "20335":
                raise RuntimeError("judging failed")
            return super().get(key, default)

    try:
        board.sync(inventory, Broken(state.sites), NOW + 1)  # type: ignore[arg-type]
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure must reach the caller")
    assert board.views == before and board.inventory is inventory
    record(inventory, state, board, "49", UP, NOW + 2)  # and it goes on working
    assert states(board)["49"] == State.READY


async def test_the_daemon_judges_a_parents_children_again_after_its_own_round(
    tmp_path: Path,
) -> None:
    # Monitor.record judges the district at once and leaves its 30 communes to a task of
    # its own (Board.cascade_in_steps): none is judged in the district's step, all end
    # parent_down.
    sites: list[dict[str, object]] = [
        {"id": "49", "name": "Tỉnh", "level": "province", "address": "127.49.0.1"},
        {"id": "502", "name": "Tam Kỳ", "level": "district", "parent": "49",
         "address": "127.49.2.1"}]
    sites += [{"id": f"c{i}", "name": f"Xã {i}", "level": "commune", "parent": "502",
               "address": f"127.49.3.{i + 1}"} for i in range(30)]
    config = load_config(write_inventory(tmp_path / "sites.toml", sites, port=9))
    monitor = Monitor(config)
    inventory = config.inventory
    monitor.windows.sync(inventory, config.monitor.window)
    monitor.board.sync(inventory, monitor.windows.sites, NOW)
    for site_id in ("49", *(f"c{i}" for i in range(30))):
        site = inventory.sites[site_id]
        monitor.record(site, icmp_round(NOW, site.address, UP if site_id == "49" else DOWN))
    assert not monitor.board.cascading
    district = inventory.sites["502"]
    monitor.record(district, icmp_round(NOW + 1, district.address, DOWN))
    assert states(monitor.board)["502"] == State.NOT_READY
    assert states(monitor.board)["c0"] == State.NOT_READY and monitor.board.cascading
    for _ in range(200):
        if not monitor.board.cascading:
            break
        await asyncio.sleep(0.01)
    assert {states(monitor.board)[f"c{i}"] for i in range(30)} == {State.PARENT_DOWN}
    assert monitor._cascading is None
