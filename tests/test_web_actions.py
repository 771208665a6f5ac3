"""The web app reads a snapshot and acts through web/actions.py, nothing else of the daemon.

Served here from a stand-in that has only what ``MonitorActions`` promises, on a real
loopback server: /healthz, /api/v1/sites, /api/v1/events, /metrics and the page answer
from the snapshot alone, and anything else asked of the monitor fails the test.
"""

from __future__ import annotations

import dataclasses
import json

from aiohttp.test_utils import TestClient, TestServer

from bridgemon.probes.result import SiteRound
from bridgemon.snapshot import HttpFigures, Quarantined, RoundFigures, Snapshot
from bridgemon.web import actions
from bridgemon.web.app import make_app
from bridgemon.web.serving import HttpLimits
from tests.test_metrics import NOW, SITES, icmp, snapshot

QUARANTINED: Quarantined = {"file": "/var/lib/bridgemon/events.json", "moved_to": None,
                            "kept": 2, "problems": ["event 'x': start: year 1"]}


class SnapshotOnly:
    """What MonitorActions promises; any other attribute is a reach into the daemon."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self.snapshots = 0

    @property
    def api_token(self) -> str | None:
        return None

    @property
    def testruns(self) -> actions.TestRunActions | None:
        return None

    def snapshot(self) -> Snapshot:
        self.snapshots += 1
        return self._snap

    async def reload(self) -> actions.ReloadOutcome:
        return actions.ReloadOutcome(True, (), len(self._snap.inventory))

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the web app reached into the monitor for {name!r}")


async def test_health_and_sites_come_from_the_snapshot_alone() -> None:
    rounds = {"48": SiteRound(NOW, (icmp("127.0.0.1", (0.010, 0.012)),))}
    snap = dataclasses.replace(
        snapshot(SITES, rounds),
        # A round every 2 s last begun 30 s ago: stalled, whatever the clock says now.
        rounds=(RoundFigures(2.0, 3, 7, 1, NOW - 30, 0.8),),
        loop_lag=0.004, http=HttpFigures(5, 2, 1), quarantined=(QUARANTINED,),
    )
    monitor = SnapshotOnly(snap)
    app = make_app(monitor, HttpLimits())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        health = await client.get("/healthz")
        assert health.status == 503
        assert await health.json() == {
            "status": "stalled", "problems": ["no probe round every 2s for 30s"],
            "sites": 3, "uptime_seconds": 60.0, "rounds": 7, "echoes_sent": 21,
            "echoes_received": 20, "loop_lag_seconds": 0.004, "http_connections": 5,
            "http_connections_refused": 2, "http_responses_abandoned": 1,
            "events_quarantined": [QUARANTINED],
            "test_runs": "starting",
        }
        sites = await client.get("/api/v1/sites", params={"verdict": "ready"})
        body = json.loads(await sites.read())
        assert body["summary"]["ready"] == 1 and [s["id"] for s in body["sites"]] == ["48"]
        assert (await client.get("/api/v1/sites/20257")).status == 200
        metrics = await (await client.get("/metrics")).text()
        assert "bridgemon_events_files_quarantined 1.0" in metrics
        assert (await client.get("/")).status == 200
        # The test-run API says it is starting up rather than reach for the test runs.
        starting = await client.get("/api/v1/events")
        assert starting.status == 503 and starting.headers["Retry-After"] == "1"
    assert monitor.snapshots >= 5
