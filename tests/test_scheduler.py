"""Probe rounds against the real engine on loopback: every site of a round is recorded
once, whether it went without a task (one ICMP burst to an IP address, ``start_icmp``) or
through ``probe_site`` (service checks, host names), within the concurrency limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridgemon.config import parse_config
from bridgemon.inventory import Inventory, Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import BurstHandle, Pinger
from bridgemon.probes.result import EchoBurst, SiteRound
from bridgemon.scheduler import RoundScheduler
from tests.conftest import needs_root
from tests.helpers import patches_hot_modules

pytestmark = needs_root

DIRECT = [f"127.31.0.{i}" for i in range(1, 13)]


def inventory(port: int) -> Inventory:
    sites = "".join(f'''
[[sites]]
id = "s{i}"
name = "Xã số {i}"
level = "commune"
parent = "tcp"
address = "{address}"
''' for i, address in enumerate(DIRECT))
    text = f'''
[monitor]
interval = "30s"

[profiles.default.icmp]
count = 3
spacing = "30ms"
timeout = "300ms"

[profiles.web.checks.port]
type = "tcp"
port = {port}
timeout = "1s"

[[levels]]
id = "hall"
name = "Hội trường"
profile = "web"

[[levels]]
id = "commune"
name = "Cấp xã"

[[sites]]
id = "tcp"
name = "Hội trường có cổng"
level = "hall"
address = "127.0.0.1"
{sites}
[[sites]]
id = "named"
name = "Điểm cầu theo tên"
level = "commune"
parent = "tcp"
address = "localhost"
'''
    return parse_config(text, Path("sites.toml")).inventory


async def _round(port: int, *, limit: int, spread: float = 0.05,
                 record_fails_for: str | None = None) -> tuple[dict[str, SiteRound], int]:
    """One round; what each site recorded, and the most bursts that were out at once."""
    rounds: dict[str, SiteRound] = {}

    def record(site: Site, site_round: SiteRound) -> None:
        assert site.id not in rounds, f"{site.id} recorded twice"
        rounds[site.id] = site_round
        if site.id == record_fails_for:
            raise RuntimeError("a bug in recording")

    ctx = ProbeContext(pinger=Pinger("auto"))
    out = most = 0
    start = ctx.pinger.start

    def counted_start(address: str, done: Callable[[EchoBurst], None],
                      **kwargs: Any) -> BurstHandle:
        nonlocal out, most

        def counted_done(burst: EchoBurst) -> None:
            nonlocal out
            out -= 1
            done(burst)

        out += 1
        most = max(most, out)
        return start(address, counted_done, **kwargs)

    ctx.pinger.start = counted_start  # type: ignore[method-assign]
    scheduler = RoundScheduler(record, ctx, max_concurrency=limit, spread=spread)
    scheduler.apply(inventory(port), max_concurrency=limit, spread=spread)
    try:
        await asyncio.wait_for(scheduler.run_round(30.0), 10)
    finally:
        ctx.pinger.close()
    assert scheduler._limit._value == limit, "every slot comes back after the round"
    return rounds, most


@pytest.fixture
async def port() -> object:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@patches_hot_modules
async def test_every_site_is_recorded_once_whichever_way_it_went(port: int) -> None:
    rounds, most = await _round(port, limit=4)
    assert set(rounds) == {f"s{i}" for i in range(len(DIRECT))} | {"tcp", "named"}
    for site_id, site_round in rounds.items():
        icmp = site_round.result("icmp")
        assert icmp is not None and icmp.ok and icmp.burst is not None, site_id
        assert icmp.burst.sent == 3 and icmp.burst.received == 3, site_id
    assert [r.check for r in rounds["tcp"].results] == ["icmp", "port"]
    assert rounds["tcp"].results[1].ok
    assert rounds["named"].results[0].target in ("127.0.0.1", "::1")
    assert rounds["s3"].results[0].target == DIRECT[3]
    assert 1 <= most <= 4


@patches_hot_modules
async def test_the_concurrency_limit_holds_for_direct_sites_too(port: int) -> None:
    # Every site is due within 30 ms, and a burst takes longer: the limit is what holds.
    rounds, most = await _round(port, limit=2, spread=0.001)
    assert len(rounds) == len(DIRECT) + 2
    assert most == 2


@patches_hot_modules
async def test_a_failure_to_record_one_site_costs_that_site_only(port: int) -> None:
    rounds, _ = await _round(port, limit=4, record_fails_for="s2")
    assert len(rounds) == len(DIRECT) + 2


async def test_a_cancelled_round_gives_every_slot_back(port: int) -> None:
    ctx = ProbeContext(pinger=Pinger("auto"))
    recorded: list[str] = []
    scheduler = RoundScheduler(lambda site, _: recorded.append(site.id), ctx,
                               max_concurrency=100, spread=0.05)
    scheduler.apply(inventory(port), max_concurrency=100, spread=0.05)
    task = asyncio.ensure_future(scheduler.run_round(30.0))
    await asyncio.sleep(0.2)  # a few sites recorded, most not started yet (1.5 s spread)
    wheel = ctx.pinger._wheel
    for _ in range(400):  # cancel while a site's burst is half sent
        if any(not burst.finished for due in wheel.values() for burst, _ in due):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("no burst was ever half sent")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        assert scheduler._limit._value == 100
        assert all(not fam.pending for fam in ctx.pinger._sockets.values())
        before = list(recorded)
        await asyncio.sleep(0.5)
        assert recorded == before, "a cancelled site is never recorded afterwards"
    finally:
        ctx.pinger.close()
