"""The operators' forms on the pages: run the test now, take or release a site of a
conference, add a note to a site (``add_page_actions``, one call in app.py).

Each handler calls ``access.require_operator`` first (the middleware has checked the form's
CSRF token), does the one thing through operations.py (the API's code path), and answers
303 to the page to look at next; a refusal is a page in Vietnamese with its status and
nothing done. Forms are small: a body over the app's limit is refused whole (413).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from bridgemon.web import access, operations
from bridgemon.web.actions import MonitorActions, TestRunActions
from bridgemon.web.operations import Refused
from bridgemon.web.pages import error_response

FORM_TIMEOUT = 10.0  # seconds for a form's body once the headers are in

_Act = Callable[[web.Request], Awaitable[web.Response]]


def add_page_actions(app: web.Application, monitor: web.AppKey[MonitorActions]) -> None:
    actions = _PageActions(monitor)
    app.router.add_post("/events/{event_id}/test-runs", actions.run_now)
    app.router.add_post("/events/{event_id}/acks", actions.ack)
    app.router.add_post("/sites/{site_id}/notes", actions.note)


def _see(path: str) -> web.Response:
    return web.Response(status=303, headers={"Location": path})


class _PageActions:
    def __init__(self, monitor: web.AppKey[MonitorActions]) -> None:
        self._monitor = monitor

    async def _begin(self, request: web.Request) -> tuple[TestRunActions, dict[str, str]]:
        """The operator's check, then the test runs' side and the form; Refused if not."""
        try:
            access.require_operator(request)
        except web.HTTPException as exc:
            raise Refused(exc.status, None, exc.text or exc.reason) from None
        testruns = request.app[self._monitor].testruns
        if testruns is None or not testruns.started:
            raise Refused(503, None, "Máy giám sát đang khởi động, hãy thử lại sau ít giây.")
        try:
            async with asyncio.timeout(FORM_TIMEOUT):
                form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, None, "Nội dung gửi lên quá lớn; chưa lưu gì.") from None
        except (TimeoutError, ValueError):
            raise Refused(400, None, "Biểu mẫu không đọc được; tải lại trang rồi thử "
                                     "lại.") from None
        return testruns, {k: v for k, v in form.items() if isinstance(v, str)}

    async def _answer(self, request: web.Request, act: _Act) -> web.Response:
        try:
            return await act(request)
        except Refused as refused:
            back = _same_site_path(request.headers.get("Referer", ""))
            return error_response(refused.status, refused.message, back or "/")

    async def run_now(self, request: web.Request) -> web.Response:
        async def act(request: web.Request) -> web.Response:
            testruns, _form = await self._begin(request)
            event_id = request.match_info["event_id"]
            event = testruns.event(event_id)
            if event is None:
                raise Refused(404, "event", f"Không có hội nghị mã {event_id!r}.")
            plan = await operations.start_run(request, testruns, event=event)
            return _see(f"/test-runs/{quote(plan.run_id, safe='')}")
        return await self._answer(request, act)

    async def ack(self, request: web.Request) -> web.Response:
        async def act(request: web.Request) -> web.Response:
            testruns, form = await self._begin(request)
            event_id = request.match_info["event_id"]
            site_id = form.get("site")
            if form.get("action", "take") == "release":
                await operations.release(request, testruns, event_id, site_id)
            else:
                await operations.take(request, testruns, event_id, site_id, form.get("note"))
            anchor = f"#site-{quote(site_id, safe='')}" if site_id else ""
            return _see(f"/events/{quote(event_id, safe='')}{anchor}")
        return await self._answer(request, act)

    async def note(self, request: web.Request) -> web.Response:
        async def act(request: web.Request) -> web.Response:
            testruns, form = await self._begin(request)
            site_id = request.match_info["site_id"]
            await operations.add_note(request, testruns, site_id, form.get("text"),
                                      form.get("event") or None)
            return _see(f"/sites/{quote(site_id, safe='')}#site-notes")
        return await self._answer(request, act)


def _same_site_path(referer: str) -> str | None:
    """The path of the page the form was on, for the error page's way back; None for
    anything that is not a plain path of this site."""
    parts = urlsplit(referer)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/") or path.startswith("//"):
        return None
    return path
