"""The technicians' pages: routes and handlers (``add_pages``, one call in app.py).

``/`` (overview), ``/sites/{id}``, ``/events/{id}``, ``/test-runs/{id}`` and their static
files. Each page answers ``?live=1`` with its live parts as JSON (static/live.js polls
that). Handlers read the snapshot, copy on the loop the little that is live (a site's
trend points) and build and render the page on the loop a slice at a time
(cooperative.py: in a thread it held the GIL against the engine's sends; the overview and
a conference go through every site or participant, 130 ms at 12,000); only a test run's
report is turned into rows in a worker thread. Bad input gets an
HTML page saying what was wrong, in Vietnamese, with its 4xx status (``error_response``,
which app.py also uses for the refusals of sign-in and CSRF when a browser is on a page).

Who is signed in, and for operators their forms (page_actions.py posts them), come from
access.py; the acknowledgements and notes from the test runs' side (``TestRunActions``),
the held takes from memory, a site's notes from the database off the loop.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridgemon import cooperative, media_types
from bridgemon.snapshot import Snapshot
from bridgemon.testrun.notes import MAX_NOTE, Ack
from bridgemon.verdicts import NAMES, WORDS_VI, State
from bridgemon.web import access
from bridgemon.web.actions import MonitorActions, TestRunActions
from bridgemon.web.pages_common import STATIC, ago, clock, compile_templates, render_page
from bridgemon.web.pages_event import event_context_steps, live_event_steps, render_event_steps
from bridgemon.web.pages_site import live_site_steps, render_site_steps, site_context_steps
from bridgemon.web.pages_test_run import (
    live_test_run_steps,
    render_test_run_steps,
    test_run_context,
)
from bridgemon.web.security import html_policy, html_policy_steps
from bridgemon.web.status_page import PageQuery, live_status_steps, render_status_steps

MAX_QUERY_TEXT = 100  # characters of a search kept


def add_pages(app: web.Application, monitor: web.AppKey[MonitorActions]) -> None:
    compile_templates()
    pages = _Pages(monitor)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/sites/{site_id}", pages.site)
    app.router.add_get("/events/{event_id}", pages.event)
    app.router.add_get("/test-runs/{run_id}", pages.test_run)
    app.router.add_get("/static/{name}", serve_static)


class _Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _html(text: str, status: int = 200) -> web.Response:
    return _html_response(text, html_policy(text, own_files=True), status)


def _html_response(text: str, policy: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type=media_types.HTML,
                        charset=media_types.CHARSET,
                        headers={"Content-Security-Policy": policy,
                                 "Cache-Control": "no-store"})


async def _page_on_loop(steps: cooperative.Steps[str]) -> web.Response:
    """A page rendered on the loop a slice at a time, its policy worked out the same way
    (cooperative.py: a thread doing it held the GIL against the engine's sends)."""
    text = await cooperative.run(steps)
    return _html_response(text, await cooperative.run(html_policy_steps(text, own_files=True)))


async def _live_on_loop(request: web.Request,
                        steps: cooperative.Steps[Mapping[str, Any]]) -> web.Response:
    """A page's live parts, built on the loop a slice at a time (see ``_page_on_loop``);
    only a version of them when the page has them already (it says which it has,
    ``seen``): a wall screen polls all day, mostly for nothing new. Encoding and
    compressing them take a few ms (150 kB of rows at 12,000 sites: ~15 kB on the wire)."""
    body = await cooperative.run(steps)
    gzip_ok = media_types.accepts_gzip(request.headers.get("Accept-Encoding", ""))
    return _live_response(*_live_payload(body, request.query.get("seen"), gzip_ok))


def _live_payload(body: Mapping[str, Any], seen: str | None,
                  gzip_ok: bool) -> tuple[bytes, bool]:
    version = hashlib.sha256(
        json.dumps(body["parts"], sort_keys=True).encode()).hexdigest()[:16]
    if seen == version:
        body = {"updated": body["updated"], "same": True}
    data = json.dumps({**body, "version": version}, ensure_ascii=False).encode()
    if gzip_ok and len(data) > 1024:
        return gzip.compress(data, 6), True
    return data, False


def _live_response(data: bytes, compressed: bool) -> web.Response:
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=data, content_type=media_types.JSON, headers=headers)


async def _error_page(snap: Snapshot, refused: _Refused) -> web.Response:
    text = render_page("error.html.j2", {
        "title": refused.title, "message": refused.message,
        "now": clock(snap.taken_at, with_year=True), "live_url": "", "sign_in": None})
    return _html(text, refused.status)


TITLES = {400: "Yêu cầu không hợp lệ", 401: "Cần đăng nhập", 403: "Không được phép",
          404: "Không tìm thấy", 405: "Không được phép", 409: "Đã có người nhận xử lý",
          413: "Nội dung quá lớn", 429: "Quá nhiều yêu cầu", 503: "Chưa sẵn sàng"}


def error_response(status: int, message: str, next_path: str = "/") -> web.Response:
    """A refusal as a page: its title by status, the message, a way on (sign in again for
    a 401)."""
    sign_in = f"/login?next={quote(next_path, safe='/')}" if status == 401 else None
    text = render_page("error.html.j2", {
        "title": TITLES.get(status, "Không thực hiện được"), "message": message,
        "now": clock(time.time(), with_year=True), "live_url": "", "sign_in": sign_in})
    return _html(text, status)


_NOT_PAGES = ("/api/", "/metrics", "/healthz", "/-/", "/static/")


def wants_page(request: web.Request) -> bool:
    """A browser on one of the pages, or posting one of their forms (a navigation: it asks
    for HTML): refusals go to it as a page. A page's live poll and a script ask for JSON
    (or for nothing in particular) and get JSON."""
    if request.path.startswith(_NOT_PAGES) or request.query.get("live"):
        return False
    return "text/html" in request.headers.get("Accept", "")


def viewer(request: web.Request) -> dict[str, Any]:
    """Who is looking, for the layout (name and sign-out) and the operators' forms."""
    user = access.current_user(request)
    operate = access.may_operate(request)
    return {"user": user.name if user else None,
            "role": ("vận hành" if user.role == "operator" else "chỉ xem") if user else None,
            "operate": operate,
            "csrf": access.csrf_token(request) if user or operate else "",
            "max_note": MAX_NOTE}


def held_view(ack: Ack, now: float) -> dict[str, str]:
    return {"user": ack.user, "since": clock(ack.taken_at), "ago": ago(now - ack.taken_at),
            "note": ack.note, "event": ack.event_id}


def _started(testruns: TestRunActions | None) -> TestRunActions | None:
    return testruns if testruns is not None and testruns.started else None


def _held_by_site(testruns: TestRunActions | None, now: float,
                  events: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """Site id -> the takes held on it (of events still known), for the overview and the
    site page. Copied on the loop: the map changes only there."""
    out: dict[str, list[dict[str, str]]] = {}
    if testruns is None:
        return out
    for event_id, held in testruns.taken().items():
        if event_id not in events:
            continue
        for site_id, ack in held.items():
            out.setdefault(site_id, []).append(
                {**held_view(ack, now), "event_title": events[event_id]})
    return out


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise _Refused(400, "Yêu cầu không hợp lệ", f"{name} phải là số nguyên") from None
    if not low <= number <= high:
        raise _Refused(400, "Yêu cầu không hợp lệ", f"{name} phải từ {low} đến {high}")
    return number


class _Pages:
    def __init__(self, monitor: web.AppKey[MonitorActions]) -> None:
        self._monitor = monitor

    def _snapshot(self, request: web.Request) -> Snapshot:
        return request.app[self._monitor].snapshot()

    async def overview(self, request: web.Request) -> web.Response:
        snap = self._snapshot(request)
        try:
            verdict = request.query.get("verdict") or None
            if verdict is not None and verdict not in NAMES:
                known = ", ".join(f"{name} ({WORDS_VI[State(name)]})" for name in NAMES)
                raise _Refused(400, "Yêu cầu không hợp lệ",
                               f"Không có trạng thái {verdict!r}; chọn một trong: {known}.")
            query = PageQuery(
                text=request.query.get("q", "").strip()[:MAX_QUERY_TEXT],
                verdict=verdict,
                district=request.query.get("district") or None,
                page=_int(request, "page", 1, 1, 1_000_000),
            )
        except _Refused as refused:
            return await _error_page(snap, refused)
        taken = _held_by_site(_started(request.app[self._monitor].testruns), snap.taken_at,
                              {event.id: event.title for event in snap.events})
        extra = {**viewer(request), "taken": taken}
        if request.query.get("live"):
            return await _live_on_loop(request, live_status_steps(snap, query, extra))
        return await _page_on_loop(render_status_steps(snap, query, extra))

    async def site(self, request: web.Request) -> web.Response:
        snap = self._snapshot(request)
        site_id = request.match_info["site_id"]
        view = snap.sites.get(site_id)
        if view is None:
            return await _error_page(snap, _Refused(
                404, "Không tìm thấy điểm cầu",
                f"Không có điểm cầu mã {site_id!r} trong danh sách đang giám sát."))
        points = view.trend.points(snap.taken_at)  # live: copied here, on the loop
        runs: list[Any] = []
        notes: list[dict[str, Any]] = []
        testruns = _started(request.app[self._monitor].testruns)
        if testruns is not None and not request.query.get("live"):
            runs = await testruns.list(limit=50)
            notes = [{"user": note.user, "when": clock(note.created, with_year=True),
                      "text": note.text, "event": note.event_id}
                     for note in await testruns.site_notes(site_id)]
        context = await cooperative.run(site_context_steps(snap, site_id, points, runs))
        assert context is not None  # the view exists, so does the site
        titles = {event.id: event.title for event in snap.events}
        context = {**context, **viewer(request), "notes": notes,
                   "taken": _held_by_site(testruns, snap.taken_at, titles).get(site_id, []),
                   "notes_action": f"/sites/{quote(site_id, safe='')}/notes"}
        if request.query.get("live"):
            return await _live_on_loop(request, live_site_steps(context))
        return await _page_on_loop(render_site_steps(context))

    async def event(self, request: web.Request) -> web.Response:
        snap = self._snapshot(request)
        event_id = request.match_info["event_id"]
        context = await cooperative.run(event_context_steps(snap, event_id))
        if context is None:
            return await _error_page(snap, _Refused(
                404, "Không tìm thấy hội nghị", f"Không có hội nghị mã {event_id!r}."))
        testruns = _started(request.app[self._monitor].testruns)
        held = testruns.taken().get(event_id, {}) if testruns is not None else {}
        base = f"/events/{quote(event_id, safe='')}"
        context = {**context, **viewer(request),
                   "acks": {site_id: held_view(ack, snap.taken_at)
                            for site_id, ack in held.items()},
                   "run_action": f"{base}/test-runs", "ack_action": f"{base}/acks",
                   "can_run": testruns is not None}
        if request.query.get("live"):
            return await _live_on_loop(request, live_event_steps(context))
        return await _page_on_loop(render_event_steps(context))

    async def test_run(self, request: web.Request) -> web.Response:
        snap = self._snapshot(request)
        run_id = request.match_info["run_id"]
        testruns = request.app[self._monitor].testruns
        if testruns is None or not testruns.started:
            return await _error_page(snap, _Refused(
                503, "Đang khởi động", "Máy giám sát đang khởi động, hãy thử lại sau ít giây."))
        report = await testruns.get(run_id)
        if report is None:
            return await _error_page(snap, _Refused(
                404, "Không tìm thấy lần kiểm tra", f"Không có lần kiểm tra mã {run_id!r}."))
        context = {**await asyncio.to_thread(test_run_context, report, snap.taken_at),
                   **viewer(request)}
        if request.query.get("live"):
            return await _live_on_loop(request, live_test_run_steps(context))
        return await _page_on_loop(render_test_run_steps(context))


async def serve_static(request: web.Request) -> web.Response:
    found = STATIC.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text="no such file")
    body, content_type = found
    # The pages ask for it with its hash in the URL (?v=...): a new file, a new URL.
    return web.Response(body=body, headers={"Content-Type": content_type,
                                            "Cache-Control": "public, max-age=31536000"})
