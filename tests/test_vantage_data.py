"""The vantage as data: a board judges with the label prefix and the isolation it is given,
a snapshot carries the vantage's figures; nothing is process state, so two vantages can be
judged side by side in one process. And a shard's snapshot exports each event participant
once across the shards."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from bridgemon import metrics
from bridgemon.board import Board
from bridgemon.config import Config, parse_config
from bridgemon.events import ZONE
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.shards import Shard, share
from bridgemon.snapshot import PingerFigures, ReloadFigures, Snapshot
from bridgemon.vantage_view import VantageFigures
from bridgemon.verdicts import State
from bridgemon.windows import SiteWindow, WindowStore
from tests.helpers import inventory_toml, parse_exposition

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC, 15:00 in Vietnam
SITES = [
    {"id": "48", "name": "UBND thành phố Đà Nẵng", "level": "province",
     "address": "127.0.0.1"},
    *({"id": f"49{d}", "name": f"Quận {d}", "level": "district", "parent": "48",
       "address": f"127.0.{d}.1"} for d in range(1, 5)),
    *({"id": f"20{d}00", "name": f"Phường Hòa Khánh {d}", "level": "commune",
       "parent": f"49{d}", "address": f"127.0.{d}.2"} for d in range(1, 5)),
]
SILENT = "20100"


def judged_windows(extra: str = "") -> tuple[Config, dict[str, SiteWindow]]:
    config = parse_config(inventory_toml(SITES, port=9, extra=extra), Path("sites.toml"))
    windows = WindowStore(window=3)
    windows.sync(config.inventory, 3)
    for site in config.inventory.sites.values():
        burst = EchoBurst(site.address, (None,) * 3 if site.id == SILENT else (0.002,) * 3)
        result = ProbeResult("icmp", "icmp", site.address, burst.received > 0, NOW, 0.5,
                             None, burst)
        windows.record(site.id, site.probe_key(), SiteRound(NOW, (result,)))
    return config, windows.sites


def snapshot(board: Board, vantage: VantageFigures | None = None) -> Snapshot:
    assert board.inventory is not None
    return Snapshot(
        taken_at=NOW, started_at=NOW - 60, inventory=board.inventory,
        sites=dict(board.views), order=board.inventory.order, rounds=(),
        pinger=PingerFigures(0, 0, 0, {}), reload=ReloadFigures(True, NOW, NOW, ()),
        vantage=vantage,
    )


def test_two_vantages_are_judged_side_by_side_with_their_own_label_and_isolation() -> None:
    config, windows = judged_windows()
    inventory = config.inventory
    hanoi = Board(labels=metrics.vantage_labels("Bộ TT&TT Hà Nội"))
    danang = Board(labels=metrics.vantage_labels('Sở "TT&TT" Đà Nẵng'),
                   isolated_since=NOW - 120)
    plain = Board()
    for board in (hanoi, danang, plain):
        board.sync(inventory, windows, NOW)

    seen = {}
    for board, figures in ((hanoi, VantageFigures("Bộ TT&TT Hà Nội", "1/1")),
                           (danang, VantageFigures('Sở "TT&TT" Đà Nẵng', "1/1", up=False,
                                                   isolated_since=NOW - 120)),
                           (plain, None)):
        samples = parse_exposition(metrics.render(snapshot(board, figures)).decode())
        seen[figures.name if figures else None] = (
            {labels.get("vantage") for series in samples.values() for labels, _ in series},
            samples)
    assert seen["Bộ TT&TT Hà Nội"][0] == {"Bộ TT&TT Hà Nội"}
    assert seen['Sở "TT&TT" Đà Nẵng'][0] == {'Sở "TT&TT" Đà Nẵng'}
    assert seen[None][0] == {None}  # no vantage given: no label, no vantage families
    assert "bridgemon_vantage_up" not in seen[None][1]
    assert seen['Sở "TT&TT" Đà Nẵng'][1]["bridgemon_vantage_up"][0][1] == 0

    # The isolation is the board's input: the same silent site, two verdicts.
    assert hanoi.views[SILENT].verdict.state == State.NOT_READY
    isolated = danang.views[SILENT].verdict
    assert isolated.state == State.UNKNOWN
    assert isolated.reasons[0].en == "monitor's own link is down since 14:58"
    assert danang.views["20200"].verdict.state == State.READY  # what answers stays ready


def test_isolate_switches_a_plain_board_and_back_with_since_kept_for_the_rest() -> None:
    config, windows = judged_windows()
    inventory = config.inventory
    board = Board(labels=metrics.vantage_labels("dc1"))
    board.sync(inventory, windows, NOW)
    ready_since = board.views["48"].since
    board._now = NOW + 30  # what a later round would date a change with
    steps = list(board.isolate(NOW + 30, step=2))
    assert len(steps) == len(inventory) // 2
    assert board.isolated_since == NOW + 30
    assert board.views[SILENT].verdict.state == State.UNKNOWN
    assert board.views[SILENT].since == NOW + 30
    assert board.views["48"].since == ready_since  # unchanged verdict, unchanged since
    assert b'vantage="dc1",site="20100"' in b"".join(board.views[SILENT].series)
    list(board.isolate(None))
    assert board.views[SILENT].verdict.state == State.NOT_READY


def test_a_reload_board_takes_the_labels_it_is_given() -> None:
    """The prefix is part of the prepared lines: a new board for a reload is given it
    again, and nothing set elsewhere leaks in."""
    config, windows = judged_windows()
    inventory = config.inventory
    first = Board(labels=metrics.vantage_labels("dc1"))
    first.sync(inventory, windows, NOW)
    unlabelled = Board()  # another board, in the same process, without a vantage
    unlabelled.sync(inventory, windows, NOW)
    again = Board(first, labels=metrics.vantage_labels("dc1"))
    again.sync(inventory, windows, NOW + 5)
    assert all(b'vantage="dc1"' in b"".join(view.series) for view in again.views.values())
    assert not any(b"vantage=" in b"".join(view.series)
                   for view in unlabelled.views.values())
    assert again.views["48"].since == first.views["48"].since


def test_each_participant_is_exported_by_one_shard_only() -> None:
    begins = datetime.fromtimestamp(NOW, ZONE) + timedelta(days=1)
    config, windows = judged_windows(
        f'\n[[events]]\nid = "hop"\ntitle = "Họp trực tuyến"\nstart = "{begins.isoformat()}"'
        f'\nparticipants = "*"\n')
    inventory = config.inventory
    assert config.events and set(config.events[0].participants) == set(inventory.sites)
    participants: Counter[str] = Counter()
    for index in (1, 2, 3):
        part = share(inventory, Shard(index, 3))
        board = Board()
        board.sync(part.inventory, windows, NOW)
        snap = Snapshot(
            taken_at=NOW, started_at=NOW - 60, inventory=part.inventory,
            sites=dict(board.views), order=part.order, rounds=(),
            pinger=PingerFigures(0, 0, 0, {}), reload=ReloadFigures(True, NOW, NOW, ()),
            events=config.events, exported=part.exported,
        )
        samples = parse_exposition(metrics.render(snap).decode())
        shown = {labels["site"] for labels, _ in samples.get("bridgemon_event_participant",
                                                              [])}
        assert shown == set(part.exported)
        participants.update(shown)
    assert set(participants) == {site["id"] for site in SITES}
    assert set(participants.values()) == {1}, participants
