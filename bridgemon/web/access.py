"""Who may do what, as the pages ask it: the one interface between the pages and auth.py.

A page handler reads ``current_user`` to greet, ``may_operate`` to show or hide the
operator's buttons, puts ``csrf_token`` in every form it renders (field ``csrf_token``,
or header ``X-CSRF-Token`` from script), and calls ``require_operator`` first thing in
every handler that changes something. Without ``[[web.users]]`` the rule is today's:
whoever is on the monitoring host itself (a loopback client) may operate.

A form, in a template given ``csrf=csrf_token(request)``::

    <form method="post" action="/logout">
      <input type="hidden" name="csrf_token" value="{{ csrf }}">
      <button type="submit">Đăng xuất</button>
    </form>

The middleware (auth.py) has checked the token before the handler runs; a handler that
calls ``require_operator`` also refuses a post that bypassed that check (no cookie).
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from bridgemon.web import auth
from bridgemon.web.auth import User

__all__ = ["User", "csrf_token", "current_user", "may_operate", "require_operator"]


def current_user(request: web.Request) -> User | None:
    """The signed-in user, or None (not signed in, or no users configured)."""
    return auth.request_user(request)


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def may_operate(request: web.Request) -> bool:
    """True for an operator's session or the API's bearer token; without users, for a
    loopback client (the real one, when a trusted proxy forwarded the request)."""
    client = request.get(auth.CLIENT)
    if client is not None and client.bearer == "api":
        return True
    user = current_user(request)
    if user is not None:
        return user.role == "operator"
    return not auth.users_configured(request) and _loopback(request.remote)


def csrf_token(request: web.Request) -> str:
    """The token this request's forms must carry: the session's own, or, without a
    session, one bound to a cookie (set on this answer if the browser has none yet)."""
    return auth.csrf_token(request)


def require_operator(request: web.Request) -> None:
    """Return if the request may change things; else raise 401 (not signed in), 403
    (signed in as a viewer, not on the monitoring host, or a form without its CSRF
    token). A state-changing request must have passed the CSRF check unless it came with
    the API's bearer token."""
    client = request.get(auth.CLIENT)
    by_token = client is not None and client.bearer == "api"
    if may_operate(request):
        if (request.method not in auth.SAFE_METHODS and not by_token
                and not request.get(auth.CSRF_VERIFIED, False)):
            raise web.HTTPForbidden(text="mã CSRF thiếu hoặc không đúng: tải lại trang rồi "
                                         "thử lại (missing or forged CSRF token)")
        return
    if auth.users_configured(request) and current_user(request) is None:
        raise web.HTTPUnauthorized(
            text="cần đăng nhập: mở /login (sign-in required)",
            headers={"WWW-Authenticate": 'Bearer realm="bridgemon"'})
    if current_user(request) is not None:
        raise web.HTTPForbidden(text="tài khoản chỉ được xem, không được thao tác "
                                     "(operator role required)")
    raise web.HTTPForbidden(text="chỉ thao tác được từ chính máy giám sát (loopback only)")
