"""The aiohttp application of ``bridgemon run``.

Handlers only read snapshots of the monitor and render them; the one mutating endpoint,
``POST /-/reload``, answers only to loopback clients.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridgemon import metrics
from bridgemon.inventory import SelectorError
from bridgemon.readiness import State
from bridgemon.views import site_json, summary_json

if TYPE_CHECKING:
    from bridgemon.daemon import Monitor

MONITOR: web.AppKey[Monitor] = web.AppKey("monitor")


def make_app(monitor: Monitor) -> web.Application:
    app = web.Application()
    app[MONITOR] = monitor
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/api/v1/sites", handle_sites)
    app.router.add_get("/api/v1/sites/{site_id}", handle_site)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/", handle_index)
    return app


async def handle_metrics(request: web.Request) -> web.Response:
    snapshot = request.app[MONITOR].snapshot()
    # Formatting 12,000 sites takes a while: do it off the loop so pacing is not stalled.
    body = await asyncio.to_thread(metrics.render, snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_health(request: web.Request) -> web.Response:
    monitor = request.app[MONITOR]
    now = time.time()
    problems: list[str] = []
    scheduler = monitor.scheduler
    for stats in scheduler.stats.values() if scheduler else ():
        age = now - stats.last_started if stats.last_started else now - monitor.started_at
        if age > 3 * stats.interval + 5:
            problems.append(f"no probe round every {stats.interval:g}s for {age:.0f}s")
    body = {
        "status": "ok" if not problems else "stalled",
        "problems": problems,
        "sites": len(monitor.config.inventory),
        "uptime_seconds": round(now - monitor.started_at, 3),
        "rounds": sum(stats.rounds for stats in scheduler.stats.values()) if scheduler else 0,
        "echoes_sent": monitor.pinger.echoes_sent if monitor.pinger else 0,
        "echoes_received": monitor.pinger.echoes_received if monitor.pinger else 0,
    }
    return web.json_response(body, status=200 if not problems else 503)


async def handle_sites(request: web.Request) -> web.Response:
    monitor = request.app[MONITOR]
    inventory = monitor.config.inventory
    verdicts = monitor.verdicts()
    selector = request.query.get("select")
    try:
        sites = inventory.select(selector) if selector else [s for s, _ in inventory.walk()]
    except SelectorError as exc:
        return web.json_response({"error": str(exc), "field": "select"}, status=400)
    wanted = request.query.get("verdict")
    if wanted is not None and wanted not in {s.value for s in State}:
        return web.json_response(
            {"error": f"unknown verdict {wanted!r}", "field": "verdict"}, status=400
        )
    rows = []
    chosen = []
    for site in sites:
        verdict = verdicts.get(site.id)
        if wanted and (verdict is None or verdict.state.value != wanted):
            continue
        latest = monitor.state.rounds(site.id)
        rows.append(site_json(site, verdict, latest[-1].results if latest else ()))
        if verdict is not None:
            chosen.append(verdict)
    return web.json_response(
        {"generated_at": time.time(), "summary": summary_json(chosen), "sites": rows},
        dumps=_dumps,
    )


async def handle_site(request: web.Request) -> web.Response:
    monitor = request.app[MONITOR]
    site_id = request.match_info["site_id"]
    site = monitor.config.inventory.sites.get(site_id)
    if site is None:
        return web.json_response({"error": f"unknown site {site_id!r}"}, status=404)
    latest = monitor.state.rounds(site_id)
    body = site_json(site, monitor.verdicts().get(site_id), latest[-1].results if latest else ())
    return web.json_response(body, dumps=_dumps)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def handle_reload(request: web.Request) -> web.Response:
    if not _is_loopback(request.remote):
        return web.json_response({"error": "reload is allowed from loopback only"}, status=403)
    outcome = await request.app[MONITOR].reload()
    body = {"ok": outcome.ok, "errors": list(outcome.errors), "sites": outcome.sites}
    return web.json_response(body, status=200 if outcome.ok else 400, dumps=_dumps)


async def handle_index(request: web.Request) -> web.Response:
    return web.Response(
        text="bridgemon: /metrics /healthz /api/v1/sites /api/v1/sites/{id}\n",
        content_type="text/plain",
    )


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
