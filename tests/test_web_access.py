"""web/access.py, the interface the pages use: who is signed in, who may operate, the
CSRF token of a form, and refusing the others. Served by make_app on a real loopback
server with two routes standing in for a page and its form's action, as the pages do."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridgemon.config import WebSettings, WebUser
from bridgemon.web import access
from bridgemon.web.app import make_app
from bridgemon.web.serving import HttpLimits
from tests.test_metrics import SITES, snapshot
from tests.test_web_actions import SnapshotOnly
from tests.test_web_auth import PASSWORD, password_hash

TOKEN = "api-token-for-tests-only"


class WithToken(SnapshotOnly):
    @property
    def api_token(self) -> str | None:
        return TOKEN


async def page(request: web.Request) -> web.Response:
    """A page with a form, as the pages render them."""
    user = access.current_user(request)
    return web.json_response({
        "user": None if user is None else [user.name, user.role],
        "may_operate": access.may_operate(request),
        "csrf_token": access.csrf_token(request),
    })


async def act(request: web.Request) -> web.Response:
    """A form's action: refuses first, then would change something."""
    access.require_operator(request)
    return web.json_response({"done": True})


Client = Callable[..., Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[WebSettings], Any]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(settings: WebSettings) -> Client:
        app = make_app(WithToken(snapshot(SITES, {})), HttpLimits(), lambda: settings)
        app.router.add_get("/page", page)
        app.router.add_post("/act", act)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)

        def client() -> aiohttp.ClientSession:
            session = aiohttp.ClientSession(
                base_url=f"http://127.0.0.1:{server.port}",
                cookie_jar=aiohttp.CookieJar(unsafe=True))
            sessions.append(session)
            return session

        return client

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


async def call(session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
               ) -> tuple[int, Any]:
    async with session.request(method, path, allow_redirects=False, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" \
            else await response.text()
        return response.status, body


async def test_without_users_a_loopback_browser_operates_with_the_forms_token(
        serve: Any) -> None:
    client = (await serve(WebSettings()))()
    status, body = await call(client, "GET", "/page")
    assert status == 200 and body["user"] is None and body["may_operate"] is True
    token = body["csrf_token"]
    # The token is bound to the cookie the page set: the form carries it, all is well.
    assert (await call(client, "POST", "/act", data={"csrf_token": token}))[0] == 200
    assert (await call(client, "POST", "/act", headers={"X-CSRF-Token": token}))[0] == 200
    # Forged, missing, or a token without its cookie: refused, nothing done.
    for kwargs in ({"data": {"csrf_token": "forged"}}, {"data": {"other": "x"}}):
        status, body = await call(client, "POST", "/act", **kwargs)
        assert status == 403 and "CSRF" in body["error"] and "done" not in body
    stranger = (await serve(WebSettings()))()
    status, body = await call(stranger, "POST", "/act", data={"csrf_token": token})
    assert status == 403 and "CSRF" in body["error"]
    # A script with the API token needs no form token.
    status, _ = await call(stranger, "POST", "/act",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200


async def test_without_users_a_client_behind_a_trusted_proxy_is_not_loopback(
        serve: Any) -> None:
    proxied = WebSettings(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    client = (await serve(proxied))()
    lan = {"X-Forwarded-For": "10.20.30.40"}
    status, body = await call(client, "GET", "/page", headers=lan)
    assert status == 200 and body["may_operate"] is False
    status, body = await call(client, "POST", "/act", headers=lan,
                              data={"csrf_token": body["csrf_token"]})
    assert status == 403 and "loopback" in body["error"]


async def sign_in(client: aiohttp.ClientSession, name: str) -> None:
    status, text = await call(client, "GET", "/login")
    assert status == 200, text
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match is not None
    status, _ = await call(client, "POST", "/login", data={
        "csrf_token": match.group(1), "name": name, "password": PASSWORD})
    assert status == 303


async def test_with_users_roles_decide_and_anonymous_is_sent_to_sign_in(serve: Any) -> None:
    settings = WebSettings(users=(WebUser("vận.hành", "operator", password_hash()),
                                  WebUser("xem", "viewer", password_hash())))
    start = await serve(settings)
    anonymous, viewer, operator = start(), start(), start()
    status, _ = await call(anonymous, "GET", "/page", headers={"Accept": "text/html"})
    assert status == 303
    status, body = await call(anonymous, "POST", "/act")
    assert status == 401 and "đăng nhập" in body["error"]
    await sign_in(viewer, "xem")
    status, body = await call(viewer, "GET", "/page")
    assert body["user"] == ["xem", "viewer"] and body["may_operate"] is False
    status, body = await call(viewer, "POST", "/act", data={"csrf_token": body["csrf_token"]})
    assert status == 403 and "operator" in body["error"]
    # Typed decomposed on a phone keyboard, it is the same name.
    await sign_in(operator, "va\u0323\u0302n.ha\u0300nh")
    status, body = await call(operator, "GET", "/page")
    assert body["user"] == ["vận.hành", "operator"] and body["may_operate"] is True
    token = body["csrf_token"]
    assert (await call(operator, "POST", "/act", data={"csrf_token": "forged"}))[0] == 403
    assert (await call(operator, "POST", "/act", data={"csrf_token": token}))[0] == 200
    # The session's token is not the viewer's, and not a cookie-bound one.
    status, body = await call(viewer, "POST", "/act", data={"csrf_token": token})
    assert status == 403
