"""WindowStore: per-site windows that survive reloads only while the measurement is the same."""

from __future__ import annotations

from dataclasses import replace

from bridgemon.inventory import Inventory, Level, Site
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.specs import IcmpSpec, Thresholds
from bridgemon.windows import WindowStore

LEVELS = (
    Level("province", "Cấp tỉnh", "default", ()),
    Level("district", "Cấp huyện", "default", ("province",)),
)


def make_site(site_id: str, name: str, parent: str | None, address: str) -> Site:
    return Site(
        id=site_id,
        name=name,
        level="district" if parent else "province",
        address=address,
        parent=parent,
        profile="default",
        contact=None,
        labels={},
        interval=30.0,
        icmp=IcmpSpec(),
        thresholds=Thresholds(),
    )


def inventory(*sites: Site) -> Inventory:
    return Inventory(levels=LEVELS, sites={site.id: site for site in sites})


def base_sites() -> list[Site]:
    return [
        make_site("49", "UBND tỉnh Quảng Nam", None, "127.49.0.1"),
        make_site("502", "Thành phố Tam Kỳ", "49", "127.49.2.1"),
        make_site("516", "Huyện Nam Trà My", "49", "127.49.16.1"),
    ]


def icmp_round(started_at: float, address: str, rtts: tuple[float | None, ...]) -> SiteRound:
    burst = EchoBurst(address, rtts)
    result = ProbeResult(
        check="icmp", kind="icmp", target=address, ok=burst.received > 0,
        started_at=started_at, duration=1.0, burst=burst,
    )
    return SiteRound(started_at=started_at, results=(result,))


def fill(store: WindowStore, site: Site, count: int, start: float = 0.0) -> None:
    for i in range(count):
        store.record(site.id, site.probe_key(), icmp_round(start + i, site.address, (0.01,)))


def started(store: WindowStore, site_id: str) -> list[float]:
    return [r.started_at for r in store.rounds(site_id)]


def test_sync_creates_empty_windows() -> None:
    store = WindowStore(window=5)
    store.sync(inventory(*base_sites()), window=5)
    assert set(store.sites) == {"49", "502", "516"}
    assert store.rounds("502") == ()
    assert store.sites["502"].key == ("127.49.2.1", IcmpSpec(), 30.0, ())
    fill(store, base_sites()[1], 7)
    assert started(store, "502") == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_window_keeps_the_newest_rounds() -> None:
    sites = base_sites()
    store = WindowStore(window=3)
    store.sync(inventory(*sites), window=3)
    fill(store, sites[1], 5)
    assert started(store, "502") == [2.0, 3.0, 4.0]
    assert store.sites["502"].rounds_total == 5


def test_record_counts_echoes_and_rounds() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    key = sites[1].probe_key()
    store.record("502", key, icmp_round(1.0, "127.49.2.1", (0.01, None, 0.02, None, None)))
    store.record("502", key, icmp_round(2.0, "127.49.2.1", (0.01, 0.01, 0.01)))
    history = store.sites["502"]
    assert history.echoes_sent == 8
    assert history.echoes_received == 5
    assert history.rounds_total == 2
    # other sites are untouched
    assert store.sites["516"].echoes_sent == 0
    assert store.sites["516"].rounds_total == 0


def test_record_counts_every_burst_of_a_round_and_skips_results_without_one() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    icmp = icmp_round(1.0, "127.49.2.1", (0.01, None)).results[0]
    tcp = ProbeResult("h323", "tcp", "127.49.2.1:1720", True, 1.0, 0.01)
    store.record("502", sites[1].probe_key(), SiteRound(1.0, (icmp, tcp, icmp)))
    assert store.sites["502"].echoes_sent == 4
    assert store.sites["502"].echoes_received == 2
    assert store.sites["502"].rounds_total == 1


def test_sync_keeps_windows_and_counters_of_unchanged_sites() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[1], 3)
    before = store.sites["502"]
    # a reload that renames the site and changes its thresholds: same measurement
    renamed = replace(sites[1], name="TP Tam Kỳ", thresholds=Thresholds(rtt_good=0.05))
    store.sync(inventory(sites[0], renamed, sites[2]), window=5)
    assert store.sites["502"] is before
    assert started(store, "502") == [0.0, 1.0, 2.0]
    assert store.sites["502"].rounds_total == 3
    assert store.sites["502"].echoes_sent == 3


def test_sync_restarts_a_site_whose_address_changed() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[1], 3)
    fill(store, sites[2], 2)
    moved = replace(sites[1], address="10.49.2.10")
    store.sync(inventory(sites[0], moved, sites[2]), window=5)
    assert store.rounds("502") == ()
    assert store.sites["502"].rounds_total == 0
    assert store.sites["502"].echoes_sent == 0
    assert store.sites["502"].key == moved.probe_key()
    assert started(store, "516") == [0.0, 1.0]  # the others keep theirs


def test_sync_restarts_a_site_whose_icmp_changed() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[1], 3)
    bigger = replace(sites[1], icmp=IcmpSpec(size=1200))
    store.sync(inventory(sites[0], bigger, sites[2]), window=5)
    assert store.rounds("502") == ()
    assert store.sites["502"].rounds_total == 0


def test_sync_restarts_a_site_whose_interval_changed() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[1], 3)
    slower = replace(sites[1], interval=60.0)
    store.sync(inventory(sites[0], slower, sites[2]), window=5)
    assert store.rounds("502") == ()


def test_sync_drops_removed_sites_and_adds_new_ones() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[2], 2)
    new = make_site("507", "Thị xã Điện Bàn", "49", "127.49.7.1")
    store.sync(inventory(sites[0], sites[1], new), window=5)
    assert set(store.sites) == {"49", "502", "507"}
    assert store.rounds("516") == ()
    assert store.rounds("507") == ()


def test_sync_shrinks_windows_keeping_the_newest() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[1], 5)
    store.sync(inventory(*sites), window=2)
    assert store.window == 2
    assert started(store, "502") == [3.0, 4.0]
    assert store.sites["502"].rounds_total == 5  # counters survive a resize
    fill(store, sites[1], 1, start=5.0)
    fill(store, sites[2], 3)
    assert started(store, "502") == [4.0, 5.0]
    assert started(store, "516") == [1.0, 2.0]


def test_sync_grows_windows_keeping_everything() -> None:
    sites = base_sites()
    store = WindowStore(window=2)
    store.sync(inventory(*sites), window=2)
    fill(store, sites[1], 3)
    store.sync(inventory(*sites), window=4)
    assert started(store, "502") == [1.0, 2.0]
    fill(store, sites[1], 3, start=10.0)
    assert started(store, "502") == [2.0, 10.0, 11.0, 12.0]


def test_record_ignores_removed_sites() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    key = sites[2].probe_key()
    store.sync(inventory(sites[0], sites[1]), window=5)  # 516 removed while in flight
    version = store.version
    store.record("516", key, icmp_round(1.0, "127.49.16.1", (0.01,)))
    assert "516" not in store.sites
    assert store.rounds("516") == ()
    assert store.version == version


def test_record_ignores_a_result_for_the_old_key() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    old_key = sites[1].probe_key()
    moved = replace(sites[1], address="10.49.2.10")
    store.sync(inventory(sites[0], moved, sites[2]), window=5)
    version = store.version
    store.record("502", old_key, icmp_round(1.0, "127.49.2.1", (0.01,)))
    assert store.rounds("502") == ()
    assert store.sites["502"].echoes_sent == 0
    assert store.version == version
    store.record("502", moved.probe_key(), icmp_round(2.0, "10.49.2.10", (0.01,)))
    assert started(store, "502") == [2.0]


def test_version_counts_changes() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    assert store.version == 0
    store.sync(inventory(*sites), window=5)
    assert store.version == 1
    fill(store, sites[0], 2)
    assert store.version == 3
    store.sync(inventory(*sites), window=5)
    assert store.version == 4


def test_rounds_returns_a_snapshot() -> None:
    sites = base_sites()
    store = WindowStore(window=5)
    store.sync(inventory(*sites), window=5)
    fill(store, sites[0], 1)
    snapshot = store.rounds("49")
    fill(store, sites[0], 1, start=5.0)
    assert isinstance(snapshot, tuple)
    assert [r.started_at for r in snapshot] == [0.0]
    assert started(store, "49") == [0.0, 5.0]


def test_site_round_result_by_check_name() -> None:
    icmp = icmp_round(1.0, "127.49.2.1", (0.01,)).results[0]
    sip = ProbeResult("sip", "sip", "127.49.2.1:5060", False, 1.0, 0.2, reason="timeout")
    site_round = SiteRound(1.0, (icmp, sip))
    assert site_round.result("sip") is sip
    assert site_round.result("icmp") is icmp
    assert site_round.result("https") is None
