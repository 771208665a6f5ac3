"""The aiohttp application of ``bridgemon run``.

Handlers only read snapshots of the monitor, whose sites were judged and rendered when
their rounds completed, and act through the few actions of ``actions.MonitorActions``
(reload, events, test runs): the web layer never imports the daemon. No handler judges,
formats thousands of samples or hands Python work to a thread (a thread holding the GIL
stalls the engine's loop as surely as a slow handler).

Bad input gets a 4xx JSON answer naming the field, from every handler (a browser asking
for HTML gets it as a page instead, see ``_pages_errors``); bodies are bounded in size and
in time. The operators' acknowledgements and notes API shares its code with the pages'
forms (operations.py). ``POST /-/reload`` answers only to loopback clients (and wants the API
token when one is configured); no state-changing request is taken from a browser page of
another site (see security.py). A handler that fails anyway answers a 500 JSON without
its traceback, which goes to the log: that is the last line, not the way bad input is met.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from bridgemon import cooperative, media_types, metrics
from bridgemon.config import WebSettings
from bridgemon.events import event_json
from bridgemon.inventory import SelectorError
from bridgemon.snapshot import Snapshot
from bridgemon.testrun.notes import NOTES_SHOWN
from bridgemon.testrun.saved_events import EventNotRemovable, EventRejected, EventsFull
from bridgemon.verdicts import NAMES
from bridgemon.web import access, auth, gzip_pieces, operations, scrape_parts
from bridgemon.web.actions import MonitorActions, TestRunActions
from bridgemon.web.auth import Handler
from bridgemon.web.operations import Refused
from bridgemon.web.page_actions import add_page_actions
from bridgemon.web.pages import add_pages, error_response, wants_page
from bridgemon.web.security import add_security_headers, cross_site, html_policy
from bridgemon.web.serving import HttpLimits

log = logging.getLogger(__name__)

MONITOR: web.AppKey[MonitorActions] = web.AppKey("monitor")
LIMITS: web.AppKey[HttpLimits] = web.AppKey("limits")
# The kept pieces of each part of /metrics served lately ("1/1" when not split).
GZIP_PIECES: web.AppKey[dict[str, gzip_pieces.GzipPieces]] = web.AppKey("gzip_pieces")

# The largest request body: an event or a test-run request is a few hundred bytes.
MAX_BODY = 64 * 1024


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405, 413, ...) in JSON like ours; and, last line, any
    exception a handler let through as a logged 500 JSON that does not show it."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == media_types.JSON:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        return web.json_response({"error": exc.text or exc.reason}, status=exc.status,
                                 headers=headers, dumps=_dumps)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return _error(500, "internal error; the daemon's log has the details")


@web.middleware
async def _pages_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser on a page, or posting a page's form, gets refusals as a page in Vietnamese,
    not JSON: the sign-in and CSRF checks (auth.py), aiohttp's 404 and 413, ours. Scripts
    and the API keep their JSON."""
    response = await handler(request)
    if (response.status < 400 or not wants_page(request)
            or not isinstance(response, web.Response)
            or response.content_type != media_types.JSON):
        return response
    try:
        message = json.loads(response.body or b"{}").get("error")  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        message = None
    page = error_response(response.status, str(message or response.reason))
    for name in ("WWW-Authenticate", "Retry-After"):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page


@web.middleware
async def _same_site_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        reason = cross_site(request)
        if reason is not None:
            return _error(403, f"refused: {reason}", "Origin")
    return await handler(request)


def make_app(monitor: MonitorActions, limits: HttpLimits,
             settings: Callable[[], WebSettings] = WebSettings,
             listen: tuple[str, int] | None = None) -> web.Application:
    """``settings``: the current [web] section, read at each request (a reload changes
    users and tokens at once; ``listen``, where it is served, and TLS take a restart)."""
    # auth outside same-site: the latter must see the client a trusted proxy names.
    app = web.Application(client_max_size=MAX_BODY,
                          middlewares=[_pages_errors, _json_errors, auth.middleware,
                                       _same_site_only])
    app.on_response_prepare.append(add_security_headers)
    app[MONITOR] = monitor
    app[LIMITS] = limits
    app[GZIP_PIECES] = {}
    auth.install(app, settings, lambda: monitor.api_token, listen)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/api/v1/sites", handle_sites)
    app.router.add_get("/api/v1/sites/{site_id}", handle_site)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/api/v1/events", handle_events)
    app.router.add_post("/api/v1/events", handle_add_event)
    app.router.add_delete("/api/v1/events/{event_id}", handle_remove_event)
    app.router.add_get("/api/v1/test-runs", handle_test_runs)
    app.router.add_post("/api/v1/test-runs", handle_start_test_run)
    app.router.add_get("/api/v1/test-runs/{run_id}", handle_test_run)
    app.router.add_get("/api/v1/events/{event_id}/acks", handle_acks)
    app.router.add_post("/api/v1/events/{event_id}/acks", handle_ack)
    app.router.add_get("/api/v1/sites/{site_id}/notes", handle_notes)
    app.router.add_post("/api/v1/sites/{site_id}/notes", handle_add_note)
    add_pages(app, MONITOR)  # /, /sites/..., /events/..., /test-runs/..., /static/...
    add_page_actions(app, MONITOR)  # the operators' forms: run now, take, note
    return app


# Bodies smaller than this go out as they are: compressing them saves next to nothing.
_GZIP_MIN = 64 * 1024


async def handle_metrics(request: web.Request) -> web.StreamResponse:
    """The exposition, or one part of it (``?part=N/M``, scrape_parts.py)."""
    try:
        part = scrape_parts.parse_part(request.query.get("part", "1/1"))
    except scrape_parts.BadPart as exc:
        return web.json_response({"error": str(exc), "field": "part"}, status=400)
    snapshot = request.app[MONITOR].snapshot()
    # Urgent: Prometheus times the scrape; a page's reader does not notice it waiting.
    sites = await cooperative.run(scrape_parts.sites_steps(snapshot.order, part), urgent=True)
    # The sites' lines were prepared when each site was judged; here they are gathered a
    # piece at a time with the loop free in between (metrics.pieces), and only the pieces
    # that changed since the last scrape of this part are compressed again
    # (gzip_pieces.py).
    kept_by_part = request.app[GZIP_PIECES]
    kept = kept_by_part.pop(str(part), None) or gzip_pieces.GzipPieces()
    if len(kept_by_part) >= scrape_parts.MAX_PARTS:  # a client asking for every split
        kept_by_part.clear()
    kept_by_part[str(part)] = kept
    plan, size = await cooperative.run(kept.plan_steps(
        metrics.pieces(snapshot, sites, own=part.index == 1)), urgent=True)
    headers = {"Content-Type": media_types.METRICS, "Vary": "Accept-Encoding"}
    if size >= _GZIP_MIN and media_types.accepts_gzip(request.headers.get("Accept-Encoding",
                                                                          "")):
        body, pieces = await cooperative.run(gzip_pieces.assemble_steps(plan), urgent=True)
        kept.keep(pieces)
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)
    # Plain (a person's curl): the compressed pieces the plan took out go back, so that
    # the next gzip scrape of this part does not compress them all again.
    kept.keep({slot: step for slot, step in plan if isinstance(step, gzip_pieces.Compressed)})
    to_send = [step.parts if isinstance(step, gzip_pieces.Compressed) else step
               for _slot, step in plan]
    del plan
    return await _send_pieces(request, to_send, headers, size)


async def _send_pieces(request: web.Request, pieces: list[Sequence[bytes]],
                       headers: dict[str, str], size: int) -> web.StreamResponse:
    """A large body sent piece by piece (each joined just before it goes), the loop given
    a turn every ``cooperative.BUDGET``: never one join or one socket write of megabytes
    (plain /metrics is 18 MB at 12,000 sites). ``write`` alone does not give it: it waits
    only when the socket is full, and a reader on loopback takes megabytes before it is:
    the plain /metrics held the loop 35-42 ms. ``size``: the body's length. ``pieces`` is
    emptied as they go, so each is let go once it is sent."""
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    pieces.reverse()
    clock = time.perf_counter
    until = clock() + cooperative.BUDGET
    while pieces:
        await response.write(b"".join(pieces.pop()))
        if clock() >= until:
            await asyncio.sleep(0)
            until = clock() + cooperative.BUDGET
    await response.write_eof()
    return response


async def handle_health(request: web.Request) -> web.Response:
    snap = request.app[MONITOR].snapshot()
    now = snap.taken_at
    problems: list[str] = []
    for rounds in snap.rounds:
        age = now - rounds.last_started if rounds.last_started else now - snap.started_at
        if age > 3 * rounds.interval + 5:
            problems.append(f"no probe round every {rounds.interval:g}s for {age:.0f}s")
    body = {
        "status": "ok" if not problems else "stalled",
        "problems": problems,
        "sites": len(snap.inventory),
        "uptime_seconds": round(now - snap.started_at, 3),
        "rounds": sum(rounds.rounds for rounds in snap.rounds),
        "echoes_sent": snap.pinger.echoes_sent,
        "echoes_received": snap.pinger.echoes_received,
        "loop_lag_seconds": round(snap.loop_lag, 6),
        "http_connections": snap.http.connections,
        # turned away because max_connections were open: a client leaking connections
        "http_connections_refused": snap.http.refused,
        # aborted because the client took nothing of its answer for 60 s (send_timeout)
        "http_responses_abandoned": snap.http.abandoned,
        # events.json files set aside at start because they held events that cannot be used
        "events_quarantined": list(snap.quarantined),
        # the test runs' store is opened after the first answers: scripts wait for "ready"
        "test_runs": _test_runs_state(request),
    }
    return web.json_response(body, status=200 if not problems else 503)


def _test_runs_state(request: web.Request) -> str:
    testruns = request.app[MONITOR].testruns
    return "ready" if testruns is not None and testruns.started else "starting"


def _int_param(request: web.Request, name: str, default: int | None, low: int,
               high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer", name) from None
    if not low <= number <= high:
        raise _bad_request(f"{name} must be from {low} to {high}", name)
    return number


def _verdict_param(request: web.Request) -> str | None:
    wanted = request.query.get("verdict") or None
    if wanted is not None and wanted not in NAMES:
        known = ", ".join(NAMES)
        raise _bad_request(f"unknown verdict {wanted!r} (one of {known})", "verdict")
    return wanted


def _bad_request(message: str, field: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=_dumps({"error": message, "field": field}), content_type=media_types.JSON
    )


async def handle_sites(request: web.Request) -> web.StreamResponse:
    """Sites, filtered before anything is built: ``select``, ``verdict``, then
    ``offset``/``limit``. Each site's JSON was prepared when it was judged; this joins."""
    snap = request.app[MONITOR].snapshot()
    inventory = snap.inventory
    selector = request.query.get("select")
    try:
        ids = [site.id for site in inventory.select(selector)] if selector else snap.order
    except SelectorError as exc:
        return web.json_response({"error": str(exc), "field": "select"}, status=400)
    wanted = _verdict_param(request)
    offset = _int_param(request, "offset", 0, 0, 10_000_000) or 0
    limit = _int_param(request, "limit", None, 0, 10_000_000)
    # Urgent, as a scrape: API clients are programs that time their requests.
    pieces = await cooperative.run(_sites_body(snap, ids, wanted, offset, limit), urgent=True)
    return await _send_pieces(request, [(piece,) for piece in pieces],
                              {"Content-Type": media_types.JSON}, sum(map(len, pieces)))


def _sites_body(snap: Snapshot, ids: Sequence[str], wanted: str | None, offset: int,
                limit: int | None) -> cooperative.Steps[list[bytes]]:
    """The JSON of /api/v1/sites in pieces, a slice of sites at a time: 12,000 rows are
    ~20 ms of joins and counts, a slice about a millisecond."""
    end = None if limit is None else offset + limit
    counts = dict.fromkeys(NAMES, 0)
    rows: list[bytes] = []
    matched = 0
    for start in range(0, len(ids), _SLICE):
        for site_id in ids[start:start + _SLICE]:
            view = snap.sites.get(site_id)
            if view is None:
                continue
            state = view.verdict.state.value
            if wanted and state != wanted:
                continue
            if offset <= matched and (end is None or matched < end):
                rows.append(view.row)
            counts[state] += 1
            matched += 1
        yield
    head = _dumps({"generated_at": snap.taken_at, "summary": {"total": matched, **counts},
                   "matched": matched, "offset": offset, "limit": limit})
    pieces = [head[:-1].encode() + b', "sites": [']
    for start in range(0, len(rows), _SLICE):
        pieces.append((b", " if start else b"") + b", ".join(rows[start:start + _SLICE]))
        yield
    pieces.append(b"]}")
    return pieces


_SLICE = 1000


async def handle_site(request: web.Request) -> web.Response:
    snap = request.app[MONITOR].snapshot()
    site_id = request.match_info["site_id"]
    view = snap.sites.get(site_id)
    if view is None:
        return web.json_response({"error": f"unknown site {site_id!r}"}, status=404)
    return web.Response(body=view.row, content_type=media_types.JSON)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def handle_reload(request: web.Request) -> web.Response:
    """Loopback only; with an API token configured, the token too (any local user or page
    could otherwise make the daemon re-read its file). 400 when the file is refused, 500
    when it loaded but could not be applied; either way the old configuration runs on."""
    if not _is_loopback(request.remote):
        return _error(403, "reload is allowed from loopback only")
    refused = _authorised(request, required=False)
    if refused is not None:
        return refused
    outcome = await request.app[MONITOR].reload()
    body: dict[str, object] = {"ok": outcome.ok, "errors": list(outcome.errors),
                               "sites": outcome.sites}
    if not outcome.ok:
        body["error"] = (f"reload rejected ({outcome.stage}); the running configuration "
                         "is kept")
        body["stage"] = outcome.stage
    status = 200 if outcome.ok else 400 if outcome.stage == "load" else 500
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- events and test runs -------------------------------------------------------------------


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, dumps=_dumps)


def _authorised(request: web.Request, *, required: bool = True) -> web.Response | None:
    """None when the bearer token is right (or, not ``required``, when none is configured)
    or an operator signed in sent it with the form's CSRF token; else the response that
    refuses the request."""
    if access.current_user(request) is not None and "Authorization" not in request.headers:
        try:
            access.require_operator(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.text or exc.reason)
        return None
    token = request.app[MONITOR].api_token
    if not token:
        if not required:
            return None
        return _error(403, "the mutating API is off until a token is configured "
                           "([api] token in the inventory, or $BRIDGEMON_API_TOKEN)")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    # Header bytes that are not UTF-8 reach us as surrogates: compare the bytes sent.
    sent = value.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent, token.encode("utf-8")):
        response = _error(401, "a valid 'Authorization: Bearer TOKEN' header is required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="bridgemon"'
        return response
    return None


async def _mutation_body(request: web.Request) -> dict[str, object] | web.Response:
    """The JSON object of an authorised mutating request, or the response refusing it."""
    refused = _authorised(request)
    if refused is not None:
        return refused
    try:
        async with asyncio.timeout(request.app[LIMITS].body_timeout):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the body must be at most {MAX_BODY} bytes", "body")
    except TimeoutError:
        return _error(408, "the body did not arrive in time", "body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5,000-digit int, too deep
        return _error(400, "the body must be a JSON object", "body")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object", "body")
    return body


def _testruns(request: web.Request) -> TestRunActions:
    testruns = request.app[MONITOR].testruns
    if testruns is None or not testruns.started:
        raise web.HTTPServiceUnavailable(
            text=_dumps({"error": "starting up, try again shortly"}),
            content_type=media_types.JSON,
            headers={"Retry-After": "1"},
        )
    return testruns


async def handle_events(request: web.Request) -> web.Response:
    _testruns(request)  # 503 until the saved events are read
    snap = request.app[MONITOR].snapshot()
    latest_runs = snap.latest_runs or {}
    rows = []
    for event in snap.events:
        row = event_json(event)
        latest = latest_runs.get(event.id)
        row["latest_run"] = (
            {k: latest[k] for k in ("run_id", "started_at", "finished_at", "summary")}
            if latest else None
        )
        rows.append(row)
    rows.sort(key=lambda row: str(row["start"]))
    return web.json_response({"events": rows}, dumps=_dumps)


async def handle_add_event(request: web.Request) -> web.Response:
    body = await _mutation_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        event = _testruns(request).add_event(body)
    except EventsFull as exc:
        return _error(409, str(exc), exc.field)
    except EventRejected as exc:
        return _error(400, str(exc), exc.field)
    except OSError as exc:
        log.error("cannot save an event added through the API: %s", exc)
        return _error(500, "the event could not be saved; the daemon's log says why")
    return web.json_response(event_json(event), status=201, dumps=_dumps)


async def handle_remove_event(request: web.Request) -> web.Response:
    """Forget an event added through the API; one of the inventory is removed there."""
    refused = _authorised(request)
    if refused is not None:
        return refused
    try:
        removed = _testruns(request).remove_event(request.match_info["event_id"])
    except EventNotRemovable as exc:
        return _error(exc.status, str(exc), exc.field)
    except OSError as exc:
        log.error("cannot save the events after removing one through the API: %s", exc)
        return _error(500, "the event could not be removed; the daemon's log says why")
    return web.json_response({"removed": removed}, dumps=_dumps)


_RUN_KEYS = {"select", "event", "count"}


async def handle_start_test_run(request: web.Request) -> web.Response:
    body = await _mutation_body(request)
    if isinstance(body, web.Response):
        return body
    unknown = sorted(set(body) - _RUN_KEYS)
    if unknown:
        return _error(400, f"unknown key {unknown[0]!r} (allowed: select, event, count)",
                      unknown[0])
    select, event_id, count = body.get("select"), body.get("event"), body.get("count")
    if (select is None) == (event_id is None):
        return _error(400, "give exactly one of 'select' (a selector) or 'event' (an id)",
                      "select")
    if select is not None and (not isinstance(select, str) or not select.strip(" ,")):
        # An empty selector would mean every site: a run that big is asked for with "*".
        return _error(400, "select must be a non-empty selector such as 'under:502' "
                           "(or '*' for every site)", "select")
    if event_id is not None and not isinstance(event_id, str):
        return _error(400, "event must be an event id (a string)", "event")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or not 1 <= count <= 1000):
        return _error(400, "count must be an integer from 1 to 1000", "count")
    testruns = _testruns(request)
    event = None
    if event_id is not None:
        event = testruns.event(event_id)
        if event is None:
            return _error(400, f"unknown event {event_id!r}", "event")
    try:
        plan = await operations.start_run(request, testruns, select=select, event=event,
                                          count=count)
    except Refused as refused:
        return _refused(refused)
    return web.json_response(
        {"run_id": plan.run_id, "sites": len(plan.sites), "status": "running",
         "url": f"/api/v1/test-runs/{plan.run_id}"},
        status=202, dumps=_dumps,
    )


def _refused(refused: Refused) -> web.Response:
    return _error(refused.status, refused.message, refused.field)


async def handle_test_runs(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 1000)
    except ValueError:
        return _error(400, "limit must be an integer", "limit")
    runs = await _testruns(request).list(limit=limit, event=request.query.get("event"))
    return web.json_response({"test_runs": runs}, dumps=_dumps)


async def handle_test_run(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in media_types.REPORTS:
        return _error(400, f"unknown format {fmt!r} (json, html, csv, table)", "format")
    report = await _testruns(request).get(request.match_info["run_id"])
    if report is None:
        return _error(404, f"no test run {request.match_info['run_id']!r}")
    if fmt == "json":
        return web.json_response(report, dumps=_dumps)
    from bridgemon.report import render

    text = await asyncio.to_thread(render, report, fmt)
    headers = {"Content-Security-Policy": html_policy(text)} if fmt == "html" else {}
    return web.Response(text=text, content_type=media_types.REPORTS[fmt][0],
                        charset=media_types.CHARSET, headers=headers)


# -- acknowledgements and notes -------------------------------------------------------------

_ACK_KEYS = {"site", "note", "action"}
_NOTE_KEYS = {"text", "event"}


def _unknown_key(body: dict[str, object], allowed: set[str]) -> web.Response | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _error(400, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})",
                      unknown[0])
    return None


async def handle_acks(request: web.Request) -> web.Response:
    """Who holds which site of an event now."""
    testruns = _testruns(request)
    event_id = request.match_info["event_id"]
    if testruns.event(event_id) is None:
        return _error(404, f"Không có hội nghị mã {event_id!r} (unknown event)", "event")
    held = testruns.taken().get(event_id, {})
    return web.json_response(
        {"event": event_id, "acks": [operations.ack_json(ack) for ack in held.values()]},
        dumps=_dumps)


async def handle_ack(request: web.Request) -> web.Response:
    """``{"site": ID, "note": "..."}`` takes the site, ``"action": "release"`` gives it back."""
    body = await _mutation_body(request)
    if isinstance(body, web.Response):
        return body
    refused = _unknown_key(body, _ACK_KEYS)
    if refused is not None:
        return refused
    action = body.get("action", "take")
    if action not in ("take", "release"):
        return _error(400, "action must be 'take' or 'release'", "action")
    testruns = _testruns(request)
    event_id = request.match_info["event_id"]
    try:
        if action == "take":
            ack = await operations.take(request, testruns, event_id, body.get("site"),
                                        body.get("note"))
            return web.json_response(operations.ack_json(ack), status=201, dumps=_dumps)
        released = await operations.release(request, testruns, event_id, body.get("site"))
    except Refused as exc:
        return _refused(exc)
    return web.json_response(
        {"released": operations.ack_json(released) if released else None}, dumps=_dumps)


async def handle_notes(request: web.Request) -> web.Response:
    testruns = _testruns(request)
    site_id = request.match_info["site_id"]
    if site_id not in request.app[MONITOR].snapshot().inventory.sites:
        return _error(404, f"Không có điểm cầu mã {site_id!r} (unknown site)", "site")
    limit = _int_param(request, "limit", NOTES_SHOWN, 1, 1000) or NOTES_SHOWN
    notes = await testruns.site_notes(site_id, limit)
    return web.json_response(
        {"site": site_id, "notes": [operations.note_json(note) for note in notes]},
        dumps=_dumps)


async def handle_add_note(request: web.Request) -> web.Response:
    """``{"text": "...", "event": ID}`` (event optional): a note on the site."""
    body = await _mutation_body(request)
    if isinstance(body, web.Response):
        return body
    refused = _unknown_key(body, _NOTE_KEYS)
    if refused is not None:
        return refused
    try:
        note = await operations.add_note(request, _testruns(request),
                                         request.match_info["site_id"], body.get("text"),
                                         body.get("event"))
    except Refused as exc:
        return _refused(exc)
    return web.json_response(operations.note_json(note), status=201, dumps=_dumps)
