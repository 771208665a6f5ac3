"""What an operator does, written once for the API (app.py) and the pages' forms
(page_actions.py): start a test run, take or release a site of a conference, add a note.

Each step checks its input and raises ``Refused`` (an HTTP status, the field, a message in
Vietnamese with the English after it); the API answers that as JSON, the pages as an HTML
page. Who may act is decided before (``access.require_operator``); nothing here reads a
body, renders or touches the database: the test runs' side stores (testrun/notes.py).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from bridgemon.events import ZONE, Event
from bridgemon.inventory import SelectorError
from bridgemon.testrun.notes import Ack, AlreadyTaken, Note, NoteRejected, NotFound
from bridgemon.testrun.plan import TestPlan
from bridgemon.web import access, auth
from bridgemon.web.actions import TestRunActions


class Refused(Exception):
    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def who(request: web.Request) -> str:
    """The name an acknowledgement or a note is stored under: the signed-in user's; a
    script's token or a loopback client without users have no name: their address."""
    client = request.get(auth.CLIENT)
    if client is not None and client.bearer == "api":
        return f"api ({request.remote})"  # the token acts, whoever's browser holds a cookie
    user = access.current_user(request)
    if user is not None:
        return user.name
    return f"máy giám sát ({request.remote})"


def run_operator(request: web.Request) -> str:
    """The operator a test run records: the user and where they were."""
    user = access.current_user(request)
    return f"{user.name} ({request.remote})" if user else f"api:{request.remote}"


async def start_run(request: web.Request, testruns: TestRunActions, *,
                    select: str | None = None, event: Event | None = None,
                    count: int | None = None) -> TestPlan:
    """Plan and launch a run (in the background); the plan tells its id."""
    try:
        plan = await testruns.plan_run(selector=select, event=event, count=count,
                                       trigger="api", operator=run_operator(request))
    except SelectorError as exc:
        raise Refused(400, "select", str(exc)) from None
    testruns.launch(plan)
    return plan


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, ZONE).strftime("%H:%M %d/%m/%Y")


async def take(request: web.Request, testruns: TestRunActions, event_id: str,
               site_id: object, note: object) -> Ack:
    site = _site_field(site_id)
    try:
        return await testruns.take(event_id, site, user=who(request), note=_text(note))
    except NotFound as exc:
        raise Refused(404, exc.field, str(exc)) from None
    except NoteRejected as exc:
        raise Refused(400, exc.field, str(exc)) from None
    except AlreadyTaken as exc:
        held = exc.ack
        raise Refused(409, "site", f"Điểm cầu {site} đã được {held.user} nhận xử lý lúc "
                                   f"{_time(held.taken_at)}; hãy trả lại trước khi nhận "
                                   f"(already taken by {held.user})") from None


async def release(request: web.Request, testruns: TestRunActions, event_id: str,
                  site_id: object) -> Ack | None:
    site = _site_field(site_id)
    try:
        return await testruns.release(event_id, site, user=who(request))
    except NotFound as exc:
        raise Refused(404, exc.field, str(exc)) from None


async def add_note(request: web.Request, testruns: TestRunActions, site_id: str,
                   text: object, event_id: object = None) -> Note:
    if event_id is not None and not isinstance(event_id, str):
        raise Refused(400, "event", "event phải là mã hội nghị (event must be an event id)")
    try:
        return await testruns.add_note(site_id, user=who(request), text=_text(text, "text"),
                                       event_id=event_id or None)
    except NotFound as exc:
        raise Refused(404, exc.field, str(exc)) from None
    except NoteRejected as exc:
        raise Refused(400, exc.field, str(exc)) from None


def _site_field(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Refused(400, "site", "Chưa chọn điểm cầu (site must be a site id)")
    return value


def _text(value: object, field: str = "note") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(400, field, f"{field} phải là chuỗi ký tự ({field} must be a string)")
    return value


def ack_json(ack: Ack) -> dict[str, object]:
    return {"event": ack.event_id, "site": ack.site_id, "user": ack.user,
            "taken_at": datetime.fromtimestamp(ack.taken_at, ZONE).isoformat(
                timespec="seconds"),
            "note": ack.note}


def note_json(note: Note) -> dict[str, object]:
    return {"id": note.id, "site": note.site_id, "event": note.event_id, "user": note.user,
            "created": datetime.fromtimestamp(note.created, ZONE).isoformat(
                timespec="seconds"),
            "text": note.text}
