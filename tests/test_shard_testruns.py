"""Shards and events: each shard pre-tests only its share of an event's participants, and
exports each participant once across the shards (live daemons on loopback)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from bridgemon.config import load_config, parse_config
from bridgemon.daemon import Monitor
from bridgemon.events import ZONE
from bridgemon.shards import Shard, owners
from tests.conftest import free_port, needs_root
from tests.helpers import ascrape, inventory_toml, write_inventory

ROOT = {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province",
        "address": "127.62.0.1"}
DISTRICTS = [{"id": f"5{n:02d}", "name": f"Huyện số {n}", "level": "district",
              "parent": "49", "address": f"127.62.{n}.1"} for n in range(1, 7)]
COMMUNES = [{"id": f"20{n:02d}0", "name": f"Xã Điện Hòa {n}", "level": "commune",
             "parent": f"5{n:02d}", "address": f"127.62.{n}.10"} for n in range(1, 7)]
SITES = [ROOT, *DISTRICTS, *COMMUNES]
EVERY = {site["id"] for site in SITES}
TESTS = '\n[test]\ncount = 3\nspacing = "20ms"\ntimeout = "500ms"\npath_mtu = 0\n'


def event(begins: datetime) -> str:
    # Pre-tests days ahead: only the run started below happens during the test.
    return (f'\n[[events]]\nid = "giao-ban"\ntitle = "Giao ban trực tuyến"\n'
            f'start = "{begins.isoformat()}"\nduration = "1h"\nparticipants = "*"\n'
            f'pretests = ["24h"]\n')


async def shard_monitor(tmp_path: Path, shard: Shard) -> Monitor:
    begins = datetime.now(ZONE).replace(microsecond=0) + timedelta(days=3)
    directory = tmp_path / f"shard{shard.index}"
    directory.mkdir()
    path = write_inventory(directory / "sites.toml", SITES, port=free_port(),
                           extra=TESTS + event(begins))
    path.write_text(path.read_text(encoding="utf-8").replace(
        "[monitor]\n", f'[monitor]\nstate_dir = "{directory / "state"}"\n', 1),
        encoding="utf-8")
    monitor = Monitor(load_config(path), shard=shard)
    await monitor.start()
    return monitor


def test_the_inventory_splits_into_two_non_empty_shares() -> None:
    """The live test below is only worth something if both shards hold sites."""
    inventory = parse_config(inventory_toml(SITES, port=1), Path("sites.toml")).inventory
    shares = Counter(owners(inventory, 2).values())
    assert shares[1] > 1 and shares[2] > 1, shares


@needs_root
async def test_each_shard_pretests_its_share_and_the_union_is_every_participant_once(
        tmp_path: Path) -> None:
    tested: Counter[str] = Counter()
    participants: Counter[str] = Counter()
    for n in (1, 2):
        monitor = await shard_monitor(tmp_path, Shard(n, 2))
        try:
            assert monitor.testruns is not None
            planned = monitor.testruns.event("giao-ban")
            assert planned is not None and set(planned.participants) == EVERY
            report = await monitor.testruns.start_run(event=planned, trigger="api",
                                                      operator="Nguyễn Văn An")
            ids = [site["id"] for site in report["sites"]]
            assert set(ids) == set(monitor.share.exported), (n, ids)
            tested.update(ids)
            # The root is probed by every shard to judge parent_down: a shard that does
            # not export it still judges its districts under it, never as orphans.
            assert {site["verdict"] for site in report["sites"]} == {"ready"}
            assert report["summary"] is not None
            assert report["summary"]["total"] == len(monitor.share.exported)
            assert monitor.bound is not None
            samples = await ascrape(f"http://127.0.0.1:{monitor.bound[1]}/metrics")
            ready = {labels["site"] for labels, _ in samples["bridgemon_testrun_site_ready"]}
            assert ready == set(monitor.share.exported)
            counted = sum(v for labels, v in samples["bridgemon_testrun_sites"]
                          if labels["event"] == "giao-ban")
            assert counted == len(monitor.share.exported)
            # The event's families too: the root, probed by both shards, is exported by
            # the one that owns it, so the central store sees each participant once.
            participants.update(labels["site"] for labels, _ in
                                samples["bridgemon_event_participant"])
        finally:
            await monitor.stop()
    assert set(tested) == EVERY and set(tested.values()) == {1}, tested
    assert set(participants) == EVERY and set(participants.values()) == {1}, participants
