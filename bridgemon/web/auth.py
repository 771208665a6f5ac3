"""Sign-in, sessions and CSRF tokens: what makes the web app safe to expose on a LAN.

Nothing here runs unless ``[[web.users]]`` are configured, except CSRF tokens (forms
carry one in every mode) and the reading of a trusted proxy's headers. See
docs/web-access.md for the operator's view; the rules, in the order the middleware
applies them:

- A request from a ``trusted_proxies`` address is handed on as coming from the client
  the proxy names in ``X-Forwarded-For`` and by the scheme of ``X-Forwarded-Proto``; every
  handler (the loopback rule of /-/reload, the same-site rule of security.py, cookie
  flags) then sees the real client. Nobody else's forwarding headers are believed.
- ``/metrics`` and ``/healthz`` stay open unless ``metrics_token`` is set, then want it
  as a bearer token (or a signed-in session): Prometheus cannot sign in.
- With users, every other path but ``/login`` wants a session cookie or the API's bearer
  token; a browser asking for a page is sent to ``/login``, anything else gets a 401.
- A state-changing request that carries one of our cookies must carry the CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``): a session's own random token,
  or, without a session, an HMAC of a random cookie under a per-process secret (sign-in
  form, and pages served without users). A bearer-token request carries no ambient
  credential, so it needs none.

Sessions live in memory only (a restart signs everybody out), bounded in number; sign-in
failures are counted per client address and per user name, bounded too. A password is
checked in a worker thread (argon2 is made to be slow), at most two at once; an unknown
name is checked against a dummy hash of the same cost, so both failures take as long.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Literal
from urllib.parse import quote

import jinja2
from aiohttp import web

from bridgemon import media_types
from bridgemon.config import WebSettings, WebUser
from bridgemon.config_models import user_name
from bridgemon.web.security import NAMED_HOSTS_OK, html_policy

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Role = Literal["viewer", "operator"]

SESSION_COOKIE = "bridgemon_session"
CSRF_COOKIE = "bridgemon_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/metrics", "/healthz"})
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SESSION_PATH = "/api/v1/session"

MAX_SESSIONS = 10_000  # a province has tens of technicians; this bounds a flood of sign-ins
SWEEP_EVERY = 60.0  # seconds between sweeps of expired sessions
MAX_FAILURE_KEYS = 4096  # addresses and names whose failures are remembered
FAILURES_ALLOWED = 5
FAILURE_WINDOW = 300.0  # seconds
VERIFY_SLOTS = 2  # argon2 at 64 MiB each: two at once on the machine, the rest wait
VERIFY_QUEUE = 32  # sign-ins waiting for a slot beyond which the answer is "busy"
FORM_TIMEOUT = 10.0  # seconds to receive a form body once the headers are in
MAX_FIELD = 1024  # longest name or password taken (argon2 of megabytes is a DoS)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role


@dataclass(slots=True)
class Session:
    id: str
    user: str
    password_hash: str  # the hash signed in against: a changed password ends the session
    csrf: str
    created: float  # time.monotonic()
    last_seen: float


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent the request, as far as we can believe it."""

    address: str | None
    https: bool
    bearer: Literal["api", "metrics", "wrong"] | None  # a token the request carries


# Per-request facts the middleware finds, for the handlers, access.py and the hooks.
CLIENT: web.RequestKey[Client] = web.RequestKey("bridgemon_client", Client)
SESSION: web.RequestKey[Session | None] = web.RequestKey("bridgemon_session")
CSRF_VERIFIED: web.RequestKey[bool] = web.RequestKey("bridgemon_csrf_ok", bool)
# Cookies to set on the response: a dict shared by the request and its proxied clone
# (aiohttp prepares the response with the request it received, not the clone).
PENDING: web.RequestKey[dict[str, str | None]] = web.RequestKey("bridgemon_cookies")


class Sessions:
    """Session id -> Session, least recently used first; bounded in number."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._table: OrderedDict[str, Session] = OrderedDict()
        self._swept = 0.0

    def __len__(self) -> int:
        return len(self._table)

    def create(self, user: WebUser, settings: WebSettings, now: float) -> Session:
        # Expired sessions nobody presents again are dropped here: at most once a minute,
        # and whenever the table is full.
        if len(self._table) >= self.limit or now - self._swept >= SWEEP_EVERY:
            self.sweep(settings, now)
            self._swept = now
        while len(self._table) >= self.limit:
            self._table.popitem(last=False)  # the longest idle
        session = Session(secrets.token_urlsafe(32), user.name, user.password_hash,
                          secrets.token_urlsafe(32), now, now)
        self._table[session.id] = session
        return session

    def get(self, session_id: str, settings: WebSettings, now: float) -> Session | None:
        session = self._table.get(session_id)
        if session is None:
            return None
        user = settings.user(session.user)
        if (_expired(session, settings, now) or user is None
                or not hmac.compare_digest(user.password_hash, session.password_hash)):
            del self._table[session_id]
            return None
        session.last_seen = now
        self._table.move_to_end(session_id)
        return session

    def drop(self, session_id: str) -> None:
        self._table.pop(session_id, None)

    def sweep(self, settings: WebSettings, now: float) -> None:
        for session_id in [s.id for s in self._table.values()
                           if _expired(s, settings, now)]:
            del self._table[session_id]


def _expired(session: Session, settings: WebSettings, now: float) -> bool:
    return (now - session.created > settings.session_hours * 3600
            or now - session.last_seen > settings.idle_timeout)


class Failures:
    """Recent sign-in failures per key (an address, a name), bounded in keys: past
    ``keys`` the key failed longest ago is forgotten."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW,
                 keys: int = MAX_FAILURE_KEYS) -> None:
        self.allowed = allowed
        self.window = window
        self.keys = keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        times = self._seen.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._seen[key]
            return None
        if len(times) < self.allowed:
            return None
        return self.window - (now - times[0])

    def fail(self, key: str, now: float) -> None:
        times = self._seen.pop(key, None) or deque(maxlen=self.allowed)
        times.append(now)
        self._seen[key] = times
        while len(self._seen) > self.keys:
            self._seen.popitem(last=False)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)


class Verifier:
    """argon2 verification off the loop, bounded; the same cost for unknown names."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(VERIFY_SLOTS)
        self._waiting = 0
        self._dummies: dict[str, str] = {}  # parameters -> a hash of a random password

    async def check(self, settings: WebSettings, name: str, password: str
                    ) -> WebUser | Literal["busy"] | None:
        if self._waiting >= VERIFY_QUEUE:
            return "busy"
        user = settings.user(name)
        self._waiting += 1
        try:
            async with self._slots:
                reference = user.password_hash if user else await self._dummy(settings)
                matched = await asyncio.to_thread(_verify, reference, password)
        finally:
            self._waiting -= 1
        return user if user is not None and matched else None

    async def _dummy(self, settings: WebSettings) -> str:
        model = settings.users[0].password_hash if settings.users else ""
        key = model.rsplit("$", 2)[0]
        dummy = self._dummies.get(key)
        if dummy is None:
            dummy = await asyncio.to_thread(_dummy_hash, model)
            self._dummies = {key: dummy}
        return dummy


def _verify(reference: str, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(reference, password)
    except (VerificationError, InvalidHashError):
        return False


def _dummy_hash(model: str) -> str:
    """A hash with the cost parameters of ``model`` (a configured user's), so that checking
    an unknown name costs what checking a known one does."""
    from argon2 import PasswordHasher, extract_parameters
    from argon2.exceptions import InvalidHashError

    try:
        hasher = PasswordHasher.from_parameters(extract_parameters(model))
    except (InvalidHashError, ValueError):
        hasher = PasswordHasher()
    return hasher.hash(secrets.token_urlsafe(16))


@dataclass
class AuthState:
    settings: Callable[[], WebSettings]
    api_token: Callable[[], str | None]
    listen: tuple[str, int] | None = None  # where the daemon serves, set at start
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: Sessions = field(default_factory=Sessions)
    failures: Failures = field(default_factory=Failures)
    verifier: Verifier = field(default_factory=Verifier)


STATE: web.AppKey[AuthState] = web.AppKey("auth", AuthState)


def install(app: web.Application, settings: Callable[[], WebSettings],
            api_token: Callable[[], str | None],
            listen: tuple[str, int] | None = None) -> None:
    """Routes and hooks; the middleware is listed by make_app, outside the same-site one.
    ``listen``: the address served, which a reload does not change."""
    app[STATE] = AuthState(settings, api_token, listen)
    app.on_response_prepare.append(_set_cookies)
    app.router.add_get(LOGIN_PATH, handle_login_page)
    app.router.add_post(LOGIN_PATH, handle_login)
    app.router.add_post(LOGOUT_PATH, handle_logout)
    app.router.add_get(SESSION_PATH, handle_session)


# -- the middleware ------------------------------------------------------------------------


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app.get(STATE)
    if state is None:
        return await handler(request)
    settings = state.settings()
    received = request
    received[PENDING] = {}
    request = _through_proxy(received, settings)
    client = Client(request.remote, request.secure, _bearer(request, state, settings))
    request[CLIENT] = received[CLIENT] = client  # the cookie hook sees the one received
    request[NAMED_HOSTS_OK] = bool(settings.users)
    session = _session(request, state, settings)
    request[SESSION] = session
    request[CSRF_VERIFIED] = False

    if state.listen is not None and not settings.users and request.path not in OPEN_PATHS \
            and not _loopback_name(state.listen[0]):
        # Started with users on a LAN address, then reloaded without them: the socket
        # stays where it is until a restart, the pages must not open to the LAN.
        return _json(503, "không có người dùng nào được cấu hình nhưng máy chủ đang mở "
                          f"ra mạng ({state.listen[0]}): thêm [[web.users]] hoặc khởi động "
                          "lại trên 127.0.0.1 (no users are configured but the daemon "
                          "listens beyond loopback: add users, or restart it on loopback)")
    if request.path in OPEN_PATHS:
        if settings.metrics_token and client.bearer != "metrics" and session is None:
            return _unauthorised("cần mã truy cập (a valid 'Authorization: Bearer TOKEN' "
                                 "with [web] metrics_token is required)")
        return await handler(request)
    if request.path == LOGIN_PATH:
        return await handler(request)  # checks its own CSRF token and counts failures
    if client.bearer == "wrong" and settings.users:
        return _unauthorised("mã truy cập không đúng (the bearer token is not valid)")
    if settings.users and session is None and client.bearer != "api":
        if request.method == "GET" and _wants_html(request):
            return _redirect(f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}")
        return _unauthorised("cần đăng nhập: mở /login (sign-in required, or an "
                             "'Authorization: Bearer TOKEN' header)")
    if request.method not in SAFE_METHODS and client.bearer != "api" and (
            session is not None or CSRF_COOKIE in request.cookies
            or SESSION_COOKIE in request.cookies):
        if not await _csrf_ok(request, state, session):
            return _json(403, "mã CSRF thiếu hoặc không đúng: tải lại trang rồi thử lại "
                              "(missing or forged CSRF token; nothing was done)", CSRF_FIELD)
        request[CSRF_VERIFIED] = True
    return await handler(request)


def _through_proxy(request: web.Request, settings: WebSettings) -> web.Request:
    """The request as its real client sent it, when it came through a trusted proxy."""
    if not settings.trusted_proxies or not _trusted(request.remote, settings):
        return request
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", [])
            for hop in value.split(",")]
    client = request.remote
    # From the right: the last address no trusted proxy added is the client.
    for hop in reversed(hops):
        if not _valid_address(hop):
            break
        client = hop
        if not _trusted(hop, settings):
            break
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    changes: dict[str, str] = {}
    if client and client != request.remote:
        changes["remote"] = client
    if proto in ("http", "https"):
        changes["scheme"] = proto
    return request.clone(**changes) if changes else request  # type: ignore[arg-type]


def _loopback_name(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _address_key(address: str | None) -> str:
    """Whose failures these are: an IPv4 address, or an IPv6 client's /64 (one host
    holds a whole /64 and could try from a new address each time)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return str(address)
    if ip.version == 6 and not ip.is_loopback:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _valid_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str | None, settings: WebSettings) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxies)


def _bearer(request: web.Request, state: AuthState, settings: WebSettings
            ) -> Literal["api", "metrics", "wrong"] | None:
    given = request.headers.get("Authorization")
    if given is None:
        return None
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer":
        return "wrong"
    # Header bytes that are not UTF-8 reach us as surrogates: compare the bytes sent.
    sent = value.strip().encode("utf-8", "surrogateescape")
    api = state.api_token()
    if api and hmac.compare_digest(sent, api.encode("utf-8")):
        return "api"
    metrics = settings.metrics_token
    if metrics and hmac.compare_digest(sent, metrics.encode("utf-8")):
        return "metrics"
    if not api and not metrics:
        return None  # nothing to check it against: the handlers say what they want
    return "wrong"


def _session(request: web.Request, state: AuthState, settings: WebSettings
             ) -> Session | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    session = state.sessions.get(session_id, settings, time.monotonic())
    if session is None:
        request[PENDING][SESSION_COOKIE] = None  # expired or unknown: clear it
    return session


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


async def _csrf_ok(request: web.Request, state: AuthState, session: Session | None) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        form = await _form(request)
        value = form.get(CSRF_FIELD) if form is not None else None
        sent = value if isinstance(value, str) else None
    if not sent:
        return False
    return hmac.compare_digest(sent.encode(), expected_csrf(request, state, session).encode())


async def _form(request: web.Request) -> dict[str, object] | None:
    """The posted form (read once; aiohttp keeps it for the handler), or None when it is
    too large, too slow or malformed."""
    try:
        async with asyncio.timeout(FORM_TIMEOUT):
            return dict(await request.post())
    except (TimeoutError, web.HTTPRequestEntityTooLarge, ValueError):
        return None


def expected_csrf(request: web.Request, state: AuthState, session: Session | None) -> str:
    if session is not None:
        return session.csrf
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return _cookie_token(state, cookie) if cookie else secrets.token_urlsafe(32)


def _cookie_token(state: AuthState, cookie: str) -> str:
    digest = hmac.new(state.secret, cookie.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_token(request: web.Request) -> str:
    """The token a form of this page must carry (see access.csrf_token)."""
    state = request.app[STATE]
    session: Session | None = request.get(SESSION)
    if session is not None:
        return session.csrf
    cookie = request.cookies.get(CSRF_COOKIE) or request[PENDING].get(CSRF_COOKIE)
    if not cookie:
        cookie = secrets.token_urlsafe(32)
        request[PENDING][CSRF_COOKIE] = cookie
    return _cookie_token(state, cookie)


def _unauthorised(message: str) -> web.Response:
    response = _json(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="bridgemon"'
    return response


def _json(status: int, message: str, field_name: str | None = None) -> web.Response:
    body: dict[str, object] = {"error": message}
    if field_name is not None:
        body["field"] = field_name
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _redirect(location: str) -> web.Response:
    """A 303 returned, not raised: its cookies are set like any answer's."""
    return web.Response(status=303, headers={"Location": location})


async def _set_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the cookies this request's handling asked for. Written as
    headers: aiohttp has turned the response's own cookies into headers by now."""
    pending = request.get(PENDING)
    client = request.get(CLIENT)
    if not pending or client is None:
        return
    settings = request.app[STATE].settings()
    for name, value in pending.items():
        jar: SimpleCookie = SimpleCookie()
        jar[name] = value or ""
        morsel = jar[name]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        if client.https:
            morsel["secure"] = True
        if value is None:
            morsel["max-age"] = "0"
            morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
        elif name == SESSION_COOKIE:
            morsel["max-age"] = str(math.ceil(settings.session_hours * 3600))
        response.headers.add("Set-Cookie", morsel.OutputString())


# -- sign-in and sign-out ------------------------------------------------------------------

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bridgemon.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

WRONG = "Tên đăng nhập hoặc mật khẩu không đúng."
EXPIRED_FORM = "Trang đăng nhập đã cũ. Vui lòng nhập lại."
BUSY = "Máy chủ đang bận. Vui lòng thử lại sau ít giây."


def _next(value: object) -> str:
    """Where to go after signing in: a path of this site only (never "//host")."""
    if (not isinstance(value, str) or not value.startswith("/") or value.startswith("//")
            or "\\" in value or len(value) > 2000 or not value.isprintable()):
        return "/"
    return value


def _page(request: web.Request, status: int, message: str | None, name: str = "",
          next_path: str = "/", headers: dict[str, str] | None = None) -> web.Response:
    html = _ENV.get_template("login.html.j2").render(
        message=message, name=name, next=next_path, csrf=csrf_token(request),
        field=CSRF_FIELD,
    )
    return web.Response(text=html, status=status, content_type=media_types.HTML,
                        charset=media_types.CHARSET,
                        headers={"Content-Security-Policy": html_policy(html),
                                 "Cache-Control": "no-store", **(headers or {})})


async def handle_login_page(request: web.Request) -> web.StreamResponse:
    settings = request.app[STATE].settings()
    next_path = _next(request.query.get("next"))
    if not settings.users or request.get(SESSION) is not None:
        return _redirect(next_path)
    return _page(request, 200, None, next_path=next_path)


async def handle_login(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    settings = state.settings()
    if not settings.users:
        return _redirect("/")
    form = await _form(request)
    if form is None:
        return _page(request, 400, EXPIRED_FORM)
    raw_name, password = form.get("name"), form.get("password")
    next_path = _next(form.get("next"))
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (isinstance(sent, str) and cookie and hmac.compare_digest(
            sent.encode(), _cookie_token(state, cookie).encode())):
        return _page(request, 403, EXPIRED_FORM, next_path=next_path)
    if not isinstance(raw_name, str) or not isinstance(password, str):
        return _page(request, 400, WRONG, next_path=next_path)
    try:
        name = user_name(raw_name.strip()[:MAX_FIELD])
    except ValueError:
        name = ""
    shown = raw_name.strip()[:64]
    now = time.monotonic()
    client = request[CLIENT]
    keys = (f"addr:{_address_key(client.address)}", f"user:{name.casefold()}")
    waits = [w for w in (state.failures.retry_after(key, now) for key in keys) if w]
    if waits:
        seconds = max(1, int(max(waits)) + 1)
        return _page(request, 429, f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau "
                                   f"{seconds} giây.", shown, next_path,
                     headers={"Retry-After": str(seconds)})
    user = await state.verifier.check(settings, name, password[:MAX_FIELD])
    if user == "busy":
        return _page(request, 503, BUSY, shown, next_path, headers={"Retry-After": "5"})
    now = time.monotonic()
    if user is None:
        for key in keys:
            state.failures.fail(key, now)
        # The name only when it is a user's: a password typed into the name box must
        # not land in the log.
        who = f"user {name!r}" if settings.user(name) else "an unknown name"
        log.warning("failed sign-in for %s from %s", who, client.address)
        return _page(request, 401, WRONG, shown, next_path)
    state.failures.clear(keys[1])
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        state.sessions.drop(old)  # never carry a session id across a sign-in
    session = state.sessions.create(user, settings, now)
    request[PENDING][SESSION_COOKIE] = session.id
    log.info("sign-in: user %r (%s) from %s", user.name, user.role, client.address)
    return _redirect(next_path)


async def handle_logout(request: web.Request) -> web.StreamResponse:
    # The middleware checked the CSRF token of a request carrying the session cookie.
    session = request.get(SESSION)
    if session is not None:
        request.app[STATE].sessions.drop(session.id)
        log.info("sign-out: user %r", session.user)
    request[PENDING][SESSION_COOKIE] = None
    return _redirect(LOGIN_PATH)


async def handle_session(request: web.Request) -> web.Response:
    """Who this is and the CSRF token their requests need: for a page's script, or a
    client that signed in through /login. Same-origin only: no page of another site can
    read it (no CORS), so handing out the token here gives away nothing."""
    user = request_user(request)
    client = request[CLIENT]
    body = {"user": user.name if user else None, "role": user.role if user else None,
            "csrf_token": csrf_token(request),
            "users_configured": users_configured(request),
            "by_token": client.bearer == "api"}
    return web.json_response(body, dumps=_dumps, headers={"Cache-Control": "no-store"})


# -- what access.py reads ------------------------------------------------------------------


def request_user(request: web.Request) -> User | None:
    session = request.get(SESSION)
    if session is None:
        return None
    user = request.app[STATE].settings().user(session.user)
    return User(user.name, user.role) if user is not None else None


def users_configured(request: web.Request) -> bool:
    state = request.app.get(STATE)
    return state is not None and bool(state.settings().users)
