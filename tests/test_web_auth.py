"""Safe to expose on a LAN: TLS, users and roles, sign-in, sessions, CSRF, rate limits,
the metrics token and a trusted proxy. Real daemons on 127.0.0.1 (TLS with a throwaway
certificate made here), real clients; nothing mocked."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import json
import logging
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.config import ConfigError, TlsError, load_config
from bridgemon.daemon import Monitor
from bridgemon.web import auth
from tests.conftest import REPO, free_port, needs_root
from tests.helpers import write_inventory

PASSWORD = "mật-khẩu-đủ-dài-1"
OTHER_PASSWORD = "một-mật-khẩu-khác-2"
TOKEN = "api-token-for-tests-only"
METRICS_TOKEN = "metrics-token-for-tests"
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.67.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.67.2.1"},
]
FAST_TESTS = '\n[test]\ncount = 2\nspacing = "20ms"\ntimeout = "300ms"\n'
OPERATOR = "vận.hành"  # a name with diacritics, as technicians have
VIEWER = "xem"


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    # A light argon2id (the config takes any argon2id cost): tests hash many times.
    return PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1).hash(password)


def user_toml(name: str, role: str, password: str = PASSWORD) -> str:
    return (f'\n[[web.users]]\nname = "{name}"\nrole = "{role}"\n'
            f'password_hash = "{password_hash(password)}"\n')


def make_cert(directory: Path, stem: str = "server") -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridgemon test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def web_toml(*, tls: bool = True, users: bool = True, extra: str = "") -> str:
    text = "\n[web]\n"
    if tls:
        text += 'tls_cert = "server.crt"\ntls_key = "server.key"\n'
    text += extra
    if users:
        text += user_toml(OPERATOR, "operator") + user_toml(VIEWER, "viewer")
    return text


def write_config(tmp_path: Path, web: str, port: int | None = None, *,
                 monitor_listen: bool = True) -> Path:
    """The inventory with ``web`` as its [web] section; ``monitor_listen``: keep the
    loopback [monitor] listen the helper writes."""
    path = write_inventory(tmp_path / "sites.toml", SITES, port=port or free_port(),
                           interval="5s", extra=FAST_TESTS + f'\n[api]\ntoken = "{TOKEN}"\n')
    text = path.read_text(encoding="utf-8").replace(
        "[monitor]\n", f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n', 1)
    # [web] before the [[sites]]: a table written after them would belong to the last site.
    head, sep, rest = text.partition("\n[[sites]]")
    if not monitor_listen:
        head = re.sub(r'(?m)^listen = "127\.0\.0\.1:\d+"\n', "", head, count=1)
    path.write_text(head + web + sep + rest, encoding="utf-8")
    return path


class Browserish:
    """An HTTP client keeping cookies like a browser (for an IP address too)."""

    def __init__(self, base: str, tls: ssl.SSLContext | None) -> None:
        self.base = base
        self.tls = tls
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=20))

    async def request(self, method: str, path: str, **kwargs: Any
                      ) -> tuple[int, Any, str]:
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.base + path, ssl=self.tls or False,
                                        **kwargs) as response:
            return response.status, response.headers, await response.text()

    async def csrf_from_login_page(self) -> str:
        status, _, page = await self.request("GET", "/login")
        assert status == 200, page
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match is not None, page
        return match.group(1)

    async def sign_in(self, name: str, password: str = PASSWORD, next_path: str = "/",
                      headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        token = await self.csrf_from_login_page()
        return await self.request("POST", "/login", headers=headers, data={
            "csrf_token": token, "name": name, "password": password, "next": next_path})

    async def csrf(self) -> str:
        status, _, body = await self.request("GET", "/api/v1/session")
        assert status == 200, body
        token = json.loads(body)["csrf_token"]
        assert isinstance(token, str)
        return token

    async def close(self) -> None:
        await self.session.close()


Started = tuple[Monitor, Callable[[], Browserish]]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    running: list[Monitor] = []
    clients: list[Browserish] = []

    async def start(web: str | None = None, tls: bool = True) -> Started:
        make_cert(tmp_path)
        path = write_config(tmp_path, web if web is not None else web_toml(tls=tls))
        monitor = Monitor(load_config(path))
        await monitor.start()
        running.append(monitor)
        assert monitor.bound is not None
        scheme = "https" if monitor.config.web.tls else "http"
        context = (ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
                   if scheme == "https" else None)

        def client() -> Browserish:
            made = Browserish(f"{scheme}://127.0.0.1:{monitor.bound[1]}", context)  # type: ignore[index]
            clients.append(made)
            return made

        return monitor, client

    yield start
    for made in clients:
        await made.close()
    for monitor in running:
        await monitor.stop()


def cookie_headers(headers: Any, name: str) -> list[str]:
    return [value for value in headers.getall("Set-Cookie", [])
            if value.startswith(f"{name}=")]


def assert_strict_cookie(header: str, *, secure: bool) -> None:
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes, header
    assert "SameSite=Strict" in header and "Path=/" in header, header
    assert ("secure" in attributes) is secure, header


# -- TLS, sign-in required, cookie flags -----------------------------------------------


@needs_root
async def test_a_tls_daemon_wants_a_sign_in_and_sets_strict_cookies(daemon: Any) -> None:
    monitor, client = await daemon()
    browser = client()
    assert browser.base.startswith("https://127.0.0.1:")
    # A page: to the sign-in page, keeping where the user was going.
    status, headers, _ = await browser.request("GET", "/?q=tam%20k%E1%BB%B3",
                                               headers={"Accept": "text/html"})
    assert status == 303 and headers["Location"].startswith("/login?next=/")
    # The read-only API without a session or token: a 401 saying what to do.
    status, _, body = await browser.request("GET", "/api/v1/sites")
    assert status == 401 and "đăng nhập" in json.loads(body)["error"]
    # The sign-in page: Vietnamese, with its CSRF cookie Secure (TLS), HttpOnly, Strict.
    status, headers, page = await browser.request("GET", "/login")
    assert status == 200 and "Đăng nhập" in page and 'lang="vi"' in page
    [csrf_cookie] = cookie_headers(headers, auth.CSRF_COOKIE)
    assert_strict_cookie(csrf_cookie, secure=True)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    status, headers, _ = await browser.sign_in(VIEWER, next_path="/?verdict=ready")
    assert status == 303 and headers["Location"] == "/?verdict=ready"
    [session_cookie] = cookie_headers(headers, auth.SESSION_COOKIE)
    assert_strict_cookie(session_cookie, secure=True)
    status, _, page = await browser.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 200 and "Tình trạng" in page
    status, _, body = await browser.request("GET", "/api/v1/sites")
    assert status == 200 and len(json.loads(body)["sites"]) == 2
    # Scripts keep their bearer token; /metrics and /healthz stay open (no metrics_token).
    anonymous = client()
    status, _, _ = await anonymous.request(
        "GET", "/api/v1/sites", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    status, _, body = await anonymous.request(
        "GET", "/api/v1/sites", headers={"Authorization": "Bearer not-the-token"})
    assert status == 401
    for path in ("/metrics", "/healthz"):
        assert (await anonymous.request("GET", path))[0] == 200
    # The next-page after sign-in is a path of this site only.
    other = client()
    status, headers, _ = await other.sign_in(VIEWER, next_path="//evil.example/")
    assert status == 303 and headers["Location"] == "/"
    assert monitor.config.web.tls


@needs_root
async def test_plain_http_on_loopback_sets_cookies_without_secure(daemon: Any) -> None:
    _, client = await daemon(tls=False)
    browser = client()
    status, headers, _ = await browser.sign_in(OPERATOR)
    assert status == 303
    [session_cookie] = cookie_headers(headers, auth.SESSION_COOKIE)
    assert_strict_cookie(session_cookie, secure=False)


# -- CSRF and roles ----------------------------------------------------------------------


async def events_stored(browser: Browserish) -> list[Any]:
    status, _, body = await browser.request(
        "GET", "/api/v1/events", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    events = json.loads(body)["events"]
    assert isinstance(events, list)
    return events


def event_body(event_id: str) -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    return {"id": event_id, "title": "Họp trực tuyến", "start": start.isoformat(),
            "duration": "2h", "participants": ["49", "502"]}


@needs_root
async def test_forged_or_missing_csrf_tokens_are_refused_and_nothing_is_stored(
        daemon: Any) -> None:
    _, client = await daemon()
    browser = client()
    assert (await browser.sign_in(OPERATOR))[0] == 303
    before = await events_stored(browser)
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        status, _, body = await browser.request("POST", "/api/v1/events",
                                                json=event_body("hop-1"), headers=headers)
        assert status == 403, body
        assert "CSRF" in json.loads(body)["error"]
    # A form post too (the field), and sign-out without its token does not sign out.
    status, _, body = await browser.request("POST", "/logout", data={"csrf_token": "forged"})
    assert status == 403, body
    assert await events_stored(browser) == before
    assert (await browser.request("GET", "/api/v1/sites"))[0] == 200  # still signed in
    # With the session's own token: done.
    token = await browser.csrf()
    status, _, body = await browser.request("POST", "/api/v1/events", json=event_body("hop-1"),
                                            headers={"X-CSRF-Token": token})
    assert status == 201, body
    assert [e["id"] for e in await events_stored(browser)] == [
        *[e["id"] for e in before], "hop-1"]
    status, headers, _ = await browser.request("POST", "/logout", data={"csrf_token": token})
    assert status == 303 and headers["Location"] == "/login"
    assert (await browser.request("GET", "/api/v1/sites"))[0] == 401


@needs_root
async def test_a_viewer_cannot_start_a_test_run_and_an_operator_can(daemon: Any) -> None:
    monitor, client = await daemon()
    viewer, operator = client(), client()
    assert (await viewer.sign_in(VIEWER))[0] == 303
    assert (await operator.sign_in(OPERATOR))[0] == 303
    runs = {"select": "502", "count": 2}
    status, _, body = await viewer.request("POST", "/api/v1/test-runs", json=runs,
                                           headers={"X-CSRF-Token": await viewer.csrf()})
    assert status == 403 and "operator" in json.loads(body)["error"]
    status, _, body = await viewer.request("GET", "/api/v1/test-runs")
    assert status == 200 and json.loads(body)["test_runs"] == []
    status, _, body = await operator.request("POST", "/api/v1/test-runs", json=runs,
                                             headers={"X-CSRF-Token": await operator.csrf()})
    assert status == 202, body
    run_id = json.loads(body)["run_id"]
    assert monitor.testruns is not None
    for _ in range(100):
        status, _, body = await operator.request("GET", f"/api/v1/test-runs/{run_id}")
        if status == 200 and json.loads(body).get("finished_at"):
            break
        await asyncio.sleep(0.1)
    assert json.loads(body)["operator"].startswith(OPERATOR)


# -- sign-in failures ------------------------------------------------------------------


def _message(page: str) -> str:
    match = re.search(r'id="message">([^<]*)<', page)
    assert match is not None, page
    return match.group(1)


@needs_root
async def test_wrong_password_and_unknown_user_look_alike_and_log_no_password(
        daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, client = await daemon(web=web_toml(extra='trusted_proxies = ["127.0.0.1"]\n'))
    browser = client()
    caplog.set_level(logging.DEBUG)
    timings: dict[str, list[float]] = {"wrong": [], "unknown": []}
    pages: dict[str, str] = {}
    for attempt in range(3):
        for kind, name in (("wrong", OPERATOR), ("unknown", OTHER_PASSWORD)):
            # Each from its own address: the per-address limit is not what this is about.
            forwarded = {"X-Forwarded-For": f"10.0.{attempt}.{len(kind)}"}
            began = time.perf_counter()
            status, _, page = await browser.sign_in(name, OTHER_PASSWORD, headers=forwarded)
            timings[kind].append(time.perf_counter() - began)
            assert status == 401, page
            pages[kind] = _message(page)
    assert pages["wrong"] == pages["unknown"] == auth.WRONG
    # An unknown name is checked against a hash of the same cost: not answered at once.
    wrong, unknown = sorted(timings["wrong"])[1], sorted(timings["unknown"])[1]
    assert unknown > 0.5 * wrong, timings
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "failed sign-in" in logged
    # Neither the password, nor a "name" that was a password typed in the wrong box.
    assert OTHER_PASSWORD not in logged and PASSWORD not in logged


@needs_root
async def test_sign_in_failures_are_rate_limited_per_address_and_per_name(
        daemon: Any) -> None:
    _, client = await daemon(web=web_toml(extra='trusted_proxies = ["127.0.0.1"]\n'))
    browser = client()

    async def attempt(name: str, password: str, address: str) -> tuple[int, Any, str]:
        return await browser.sign_in(name, password, headers={"X-Forwarded-For": address})

    # Per name: five failures from five addresses, then even the right password waits.
    for i in range(5):
        assert (await attempt(VIEWER, OTHER_PASSWORD, f"10.1.0.{i}"))[0] == 401
    status, headers, page = await attempt(VIEWER, PASSWORD, "10.1.0.99")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 300
    assert _message(page).startswith("Đăng nhập sai quá nhiều lần")
    assert f"{headers['Retry-After']} giây" in page
    # Another name from another address is not held back by that.
    assert (await attempt(OPERATOR, PASSWORD, "10.1.0.98"))[0] == 303
    browser = client()  # signed out
    # Per address: five failures with unknown names, then this address waits.
    for i in range(5):
        assert (await attempt(f"ai-do-{i}", OTHER_PASSWORD, "10.2.0.1"))[0] == 401
    assert (await attempt(f"ai-do-{9}", OTHER_PASSWORD, "10.2.0.1"))[0] == 429
    # An IPv6 client's /64 counts as one address: a new address in it does not help.
    for i in range(5):
        assert (await attempt(f"ai-do-{i}", OTHER_PASSWORD, f"2001:db8:1:2::{i + 1}"))[0] \
            == 401
    assert (await attempt("ai-do-9", OTHER_PASSWORD, "2001:db8:1:2:ffff::9"))[0] == 429
    assert (await attempt("ai-do-9", OTHER_PASSWORD, "2001:db8:1:3::9"))[0] == 401


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"[/\\\t\n ]{1,4}[a-z.:@%]{0,12}", fullmatch=True))
def test_after_sign_in_the_browser_stays_on_this_site(wanted: str) -> None:
    # Whatever "next" a link carries, the redirect's target resolves to this host (URL
    # parsers drop tabs and newlines and read "\\" as "/": "/\t/evil" is "//evil").
    target = auth._next(wanted)
    # As a browser reads it (WHATWG URL): tabs and newlines dropped, "\\" taken for "/".
    seen = "".join(ch for ch in target if ch not in "\t\n\r").replace("\\", "/")
    assert urlsplit(urljoin("https://giamsat.example/", seen)).netloc == "giamsat.example"


def test_the_failure_and_session_tables_are_bounded() -> None:
    failures = auth.Failures(allowed=5, window=300, keys=100)
    for i in range(1000):
        failures.fail(f"addr:10.0.{i // 256}.{i % 256}", 1000.0)
    assert len(failures) == 100
    assert failures.retry_after("addr:10.0.0.0", 1000.0) is None  # forgotten, oldest first
    from bridgemon.config import WebSettings, WebUser

    user = WebUser("an", "viewer", password_hash())
    settings = WebSettings(users=(user,), idle_timeout=60)
    sessions = auth.Sessions(limit=50)
    first = sessions.create(user, settings, 0.0)
    for i in range(200):
        sessions.create(user, settings, float(i))
    assert len(sessions) == 50
    assert sessions.get(first.id, settings, 200.0) is None
    # Expired ones go first when the table is full: the live ones stay.
    live = sessions.create(user, settings, 1000.0)
    for _ in range(49):
        sessions.create(user, settings, 1000.0)
    assert sessions.get(live.id, settings, 1001.0) is live
    # Expired sessions nobody presents again do not wait for the table to fill up.
    sessions = auth.Sessions(limit=50)
    forgotten = sessions.create(user, settings, 5000.0)
    sessions.create(user, settings, 6000.0)
    assert len(sessions) == 1 and sessions.get(forgotten.id, settings, 5001.0) is None


# -- expired sessions ------------------------------------------------------------------


@needs_root
async def test_idle_and_old_sessions_end(daemon: Any) -> None:
    _, client = await daemon(web=web_toml(extra='idle_timeout = "1s"\n'))
    browser = client()
    assert (await browser.sign_in(VIEWER))[0] == 303
    assert (await browser.request("GET", "/api/v1/sites"))[0] == 200
    await asyncio.sleep(1.5)
    status, headers, _ = await browser.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["Location"].startswith("/login")
    [cleared] = cookie_headers(headers, auth.SESSION_COOKIE)
    assert "Max-Age=0" in cleared or "expires=Thu, 01 Jan 1970" in cleared.lower() \
        or "01 jan 1970" in cleared.lower(), cleared


@needs_root
async def test_a_session_ends_at_its_absolute_lifetime_even_when_used(
        daemon: Any, tmp_path: Path) -> None:
    _, client = await daemon(web=web_toml(extra="session_hours = 0.001\n"))  # 3.6 s
    browser = client()
    assert (await browser.sign_in(VIEWER))[0] == 303
    [session_id] = [c.value for c in browser.session.cookie_jar
                    if c.key == auth.SESSION_COOKIE]
    began = time.monotonic()
    while time.monotonic() - began < 2.5:  # never idle, yet...
        assert (await browser.request("GET", "/api/v1/sites"))[0] == 200
        await asyncio.sleep(0.3)
    await asyncio.sleep(4 - (time.monotonic() - began))
    # The cookie sent as it was (the client's jar drops it at its Max-Age by itself):
    # the server ended the session.
    status, _, _ = await client().request(
        "GET", "/api/v1/sites", headers={"Cookie": f"{auth.SESSION_COOKIE}={session_id}"})
    assert status == 401


@needs_root
async def test_a_changed_password_or_a_removed_user_ends_their_sessions(
        daemon: Any, tmp_path: Path) -> None:
    monitor, client = await daemon()
    viewer, operator = client(), client()
    assert (await viewer.sign_in(VIEWER))[0] == 303
    assert (await operator.sign_in(OPERATOR))[0] == 303
    path = tmp_path / "sites.toml"
    text = path.read_text(encoding="utf-8")
    viewer_at = text.index(f'name = "{VIEWER}"')
    # The viewer's password changes: their session ends, the operator's does not.
    path.write_text(text[:viewer_at] + text[viewer_at:].replace(
        password_hash(PASSWORD), password_hash(OTHER_PASSWORD), 1), encoding="utf-8")
    assert (await monitor.reload()).ok
    assert (await viewer.request("GET", "/api/v1/sites"))[0] == 401
    assert (await operator.request("GET", "/api/v1/sites"))[0] == 200
    # The operator is removed from the file: theirs ends too.
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f'name = "{OPERATOR}"', 'name = "người-khác"'),
                    encoding="utf-8")
    assert (await monitor.reload()).ok
    assert (await operator.request("GET", "/api/v1/sites"))[0] == 401


@needs_root
async def test_users_removed_by_a_reload_close_the_pages_of_a_lan_listener(
        tmp_path: Path) -> None:
    # Listen changes wait for a restart; users go at once. Bound beyond loopback with
    # users, then reloaded without them (and a loopback listen), the socket stays open to
    # the LAN: the pages must not. (Bound to 0.0.0.0 here, reached on 127.0.0.1.)
    port = free_port()
    lan = f'\n[web]\nlisten = "0.0.0.0:{port}"\nallow_plain_http = true\n'
    path = write_config(tmp_path, lan + user_toml(VIEWER, "viewer"), port,
                        monitor_listen=False)
    monitor = Monitor(load_config(path))
    await monitor.start()
    browsers = [Browserish(f"http://127.0.0.1:{port}", None) for _ in range(2)]
    try:
        assert (await browsers[0].sign_in(VIEWER))[0] == 303
        write_config(tmp_path, f'\n[web]\nlisten = "127.0.0.1:{port}"\n', port,
                     monitor_listen=False)
        assert (await monitor.reload()).ok
        for browser in browsers:
            status, _, body = await browser.request("GET", "/api/v1/sites")
            assert status == 503 and "[[web.users]]" in json.loads(body)["error"]
        assert (await browsers[1].request("GET", "/metrics"))[0] == 200
    finally:
        for browser in browsers:
            await browser.close()
        await monitor.stop()


# -- metrics token, trusted proxy ------------------------------------------------------


@needs_root
async def test_the_metrics_token_guards_metrics_and_health(daemon: Any) -> None:
    _, client = await daemon(web=web_toml(extra=f'metrics_token = "{METRICS_TOKEN}"\n'))
    scraper = client()
    for path in ("/metrics", "/healthz"):
        status, headers, _ = await scraper.request("GET", path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await scraper.request(
            "GET", path, headers={"Authorization": "Bearer wrong-token-0000000"})
        assert status == 401
        status, _, body = await scraper.request(
            "GET", path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200, body
    # The metrics token opens nothing else.
    status, _, _ = await scraper.request(
        "GET", "/api/v1/sites", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 401


@needs_root
async def test_a_trusted_proxy_names_the_client_and_nobody_else_does(daemon: Any) -> None:
    proxied = web_toml(tls=False, extra='trusted_proxies = ["127.0.0.1/32"]\n')
    _, client = await daemon(web=proxied)
    browser = client()
    # The proxy says the browser used https: the cookies are Secure.
    status, headers, _ = await browser.sign_in(
        OPERATOR, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.3.0.7"})
    assert status == 303
    [session_cookie] = cookie_headers(headers, auth.SESSION_COOKIE)
    assert_strict_cookie(session_cookie, secure=True)
    # Reload is for the monitoring host itself: a client behind the proxy is not.
    status, _, body = await browser.request(
        "POST", "/-/reload", headers={"X-Forwarded-For": "10.3.0.7",
                                      "Authorization": f"Bearer {TOKEN}"})
    assert status == 403 and "loopback" in body
    status, _, _ = await browser.request(
        "POST", "/-/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    # A browser's own post through the proxy, by the proxy's name and port, is same-site;
    # the same page claiming plain http is not. (The Secure cookie is sent by hand: the
    # test talks plain HTTP to the daemon, as the proxy does.)
    [session_id] = [c.value for c in browser.session.cookie_jar
                    if c.key == auth.SESSION_COOKIE]
    proxy = {"Host": "giamsat.example:8443", "X-Forwarded-For": "10.3.0.7",
             "X-Forwarded-Proto": "https", "Cookie": f"{auth.SESSION_COOKIE}={session_id}"}
    status, _, body = await client().request("GET", "/api/v1/session", headers=proxy)
    token = json.loads(body)["csrf_token"]
    for origin, wanted in (("http://giamsat.example:8443", 403),
                           ("https://giamsat.example:8443", 201)):
        status, _, body = await client().request(
            "POST", "/api/v1/events", json=event_body("qua-proxy"),
            headers={**proxy, "Origin": origin, "Sec-Fetch-Site": "same-origin",
                     "X-CSRF-Token": token})
        assert status == wanted, body


@needs_root
async def test_forwarding_headers_of_an_untrusted_client_are_ignored(daemon: Any) -> None:
    _, client = await daemon(web=web_toml(tls=False))  # no trusted_proxies
    browser = client()
    status, headers, _ = await browser.sign_in(
        OPERATOR, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.3.0.7"})
    assert status == 303
    [session_cookie] = cookie_headers(headers, auth.SESSION_COOKIE)
    assert_strict_cookie(session_cookie, secure=False)
    status, _, _ = await browser.request(
        "POST", "/-/reload", headers={"X-Forwarded-For": "10.3.0.7",
                                      "Authorization": f"Bearer {TOKEN}"})
    assert status == 200


# -- configuration errors ------------------------------------------------------------------


def config_errors(tmp_path: Path, web: str, port: int | None = None, *,
                  monitor_listen: bool = True) -> list[str]:
    path = write_config(tmp_path, web, port, monitor_listen=monitor_listen)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


@pytest.mark.parametrize("written", [
    PASSWORD,  # the password itself, pasted by mistake
    "$2b$12$" + "a" * 53,  # bcrypt
    "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    "$argon2id$v=19$m=65536,t=3,p=4$not base64!$x",
])
def test_a_password_hash_that_is_not_argon2id_is_refused_without_echoing_it(
        tmp_path: Path, written: str) -> None:
    web = f'\n[web]\n[[web.users]]\nname = "an"\nrole = "viewer"\npassword_hash = "{written}"\n'
    [error] = config_errors(tmp_path, web)
    path = tmp_path / "sites.toml"
    assert error.startswith(f"{path}:{line_of(path, 'password_hash =')}: "
                            "web.users[0].password_hash: password_hash is ")
    assert "bridgemon passwd" in error
    assert written not in error


def test_roles_and_duplicate_names_are_checked(tmp_path: Path) -> None:
    [error] = config_errors(tmp_path, "\n[web]" + user_toml("an", "admin"))
    assert "web.users[0].role" in error and "'viewer' or 'operator'" in error
    # The same name twice, one composed and one decomposed: still the same name.
    decomposed = "bi\u0300nh"
    [error] = config_errors(tmp_path, "\n[web]" + user_toml("bình", "viewer")
                            + user_toml(decomposed, "operator"))
    assert "web.users[1].name: duplicate user name 'bình'" in error


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    make_cert(tmp_path)
    (tmp_path / "server.crt").unlink()
    [error] = config_errors(tmp_path, web_toml())
    path = tmp_path / "sites.toml"
    assert error.startswith(f"{path}:{line_of(path, 'tls_cert')}: web.tls_cert: "
                            f"{tmp_path / 'server.crt'}: cannot read the TLS certificate")


def test_a_certificate_that_does_not_match_its_key_is_refused(tmp_path: Path) -> None:
    make_cert(tmp_path)
    make_cert(tmp_path, "other")
    (tmp_path / "server.key").write_bytes((tmp_path / "other.key").read_bytes())
    [error] = config_errors(tmp_path, web_toml())
    assert f"{tmp_path / 'server.crt'}: the certificate does not match the private key " \
           f"{tmp_path / 'server.key'}" in error


def test_a_key_that_is_not_pem_is_named(tmp_path: Path) -> None:
    make_cert(tmp_path)
    (tmp_path / "server.key").write_text("not a key\n")
    [error] = config_errors(tmp_path, web_toml())
    assert f"web.tls_key: {tmp_path / 'server.key'}: not a PEM private key" in error


def test_a_key_with_a_passphrase_is_named(tmp_path: Path) -> None:
    make_cert(tmp_path)
    key = serialization.load_pem_private_key((tmp_path / "server.key").read_bytes(), None)
    (tmp_path / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    [error] = config_errors(tmp_path, web_toml())
    assert f"{tmp_path / 'server.key'}: the private key is protected by a passphrase" in error


def test_a_certificate_about_to_expire_is_a_warning(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    soon = (x509.CertificateBuilder().subject_name(loaded.subject)
            .issuer_name(loaded.issuer).public_key(loaded.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=80))
            .not_valid_after(now + dt.timedelta(days=5, hours=1))
            .sign(private, hashes.SHA256()))
    cert.write_bytes(soon.public_bytes(serialization.Encoding.PEM))
    config = load_config(write_config(tmp_path, web_toml()))
    [warning] = [str(w) for w in config.warnings]
    assert f"web.tls_cert: {cert}: the certificate expires in 5 days" in warning


def test_tls_needs_both_files(tmp_path: Path) -> None:
    make_cert(tmp_path)
    [error] = config_errors(tmp_path, '\n[web]\ntls_cert = "server.crt"\n')
    assert "TLS needs both tls_cert and tls_key; tls_key is missing" in error


@pytest.mark.parametrize("section", ["web", "monitor"])
@pytest.mark.parametrize(("users", "wanted"), [
    (False, "no user is configured: add [[web.users]] (`bridgemon passwd NAME`"),
    (True, "without TLS: passwords would cross the network in clear"),
])
def test_a_lan_address_needs_users_and_tls(tmp_path: Path, section: str, users: bool,
                                           wanted: str) -> None:
    port = free_port()
    listen = f'listen = "198.18.0.1:{port}"\n'
    web = ("\n[web]\n" + (listen if section == "web" else "")
           + (user_toml("an", "viewer") if users else ""))
    path = write_config(tmp_path, web, port, monitor_listen=False)
    if section == "monitor":  # the older key is held to the same rule
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("[monitor]\n", "[monitor]\n" + listen, 1),
                        encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert issue.field == f"{section}.listen" and wanted in issue.message, issue
    assert issue.line == line_of(path, "198.18.0.1")


def test_listen_written_twice_is_an_error_and_web_listen_wins(tmp_path: Path) -> None:
    port = free_port()
    [error] = config_errors(tmp_path, f'\n[web]\nlisten = "127.0.0.1:{port}"\n', port)
    assert "web.listen: listen is given twice" in error
    path = write_config(tmp_path, f'\n[web]\nlisten = "127.0.0.1:{port}"\n', port,
                        monitor_listen=False)
    assert load_config(path).monitor.listen == ("127.0.0.1", port)


def test_lan_addresses_with_users_and_a_way_to_keep_passwords_safe_load(
        tmp_path: Path) -> None:
    make_cert(tmp_path)
    for extra in ('tls_cert = "server.crt"\ntls_key = "server.key"\n',
                  'trusted_proxies = ["10.0.0.5"]\n', "allow_plain_http = true\n"):
        path = write_config(tmp_path, "\n[web]\nlisten = \"0.0.0.0:9470\"\n" + extra
                            + user_toml("an", "viewer"), monitor_listen=False)
        assert load_config(path).monitor.listen == ("0.0.0.0", 9470)


def run_cli(*args: str, stdin: str = "", cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=cwd or REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_check_config_and_run_name_the_tls_file_and_refuse_a_lan_address(
        tmp_path: Path) -> None:
    make_cert(tmp_path)
    path = write_config(tmp_path, web_toml())
    done = run_cli("-c", str(path), "check-config")
    assert done.returncode == 0 and done.stdout.rstrip().endswith("; web: 2 users, TLS")
    (tmp_path / "server.key").unlink()
    done = run_cli("-c", str(path), "check-config")
    assert done.returncode == 2
    assert f"{tmp_path / 'server.key'}: cannot read the TLS private key" in done.stderr
    done = run_cli("-c", str(path), "run")
    assert done.returncode == 2 and "nothing was started" in done.stderr
    path = write_config(tmp_path, "")
    done = run_cli("-c", str(path), "run", "--listen", f"0.0.0.0:{free_port()}")
    assert done.returncode == 2
    assert "--listen: 0.0.0.0" in done.stderr and "[[web.users]]" in done.stderr


@needs_root
async def test_a_certificate_gone_by_start_is_named_and_nothing_listens(
        tmp_path: Path) -> None:
    make_cert(tmp_path)
    config = load_config(write_config(tmp_path, web_toml()))
    (tmp_path / "server.crt").unlink()
    monitor = Monitor(config)
    try:
        with pytest.raises(TlsError, match=re.escape(str(tmp_path / "server.crt"))):
            await monitor.start()
        assert monitor.bound is None
    finally:
        await monitor.stop()


async def test_a_client_that_never_finishes_its_tls_handshake_is_dropped(
        tmp_path: Path) -> None:
    from aiohttp import web

    from bridgemon.config import tls_context
    from bridgemon.web.serving import HttpLimits, Listener

    cert, key = make_cert(tmp_path)
    app = web.Application()
    listener = Listener(app, HttpLimits(tls_handshake_timeout=0.5))
    _, port = await listener.start("127.0.0.1", 0, tls=tls_context(cert, key))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        assert time.monotonic() - began < 5
        writer.close()
        # Plain HTTP to the TLS port: no answer in clear, the connection is closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"HTTP/1.1" not in await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await listener.close()


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    from aiohttp import web

    from bridgemon.config import tls_context
    from bridgemon.web.serving import HttpLimits, Listener

    first = make_cert(tmp_path, "first")
    second = make_cert(tmp_path, "second")
    listener = Listener(web.Application(), HttpLimits())
    _, port = await listener.start("127.0.0.1", 0, tls=tls_context(*first))

    async def served() -> bytes:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE  # which certificate, not whether it is trusted
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return bytes(der)

    def der(path: Path) -> bytes:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
            serialization.Encoding.DER)

    try:
        assert await served() == der(first[0])
        with pytest.raises(TlsError, match="does not match the private key"):
            listener.renew_tls(second[0], first[1])
        assert await served() == der(first[0])  # the bad pair changed nothing
        listener.renew_tls(*second)
        assert await served() == der(second[0])
    finally:
        await listener.close()


async def test_a_reload_serves_the_renewed_certificate_and_a_bad_one_is_rejected(
        daemon: Any, tmp_path: Path) -> None:
    """The daemon's reload: certbot-style renewal (same files, new contents) is served from
    the next handshake; a certificate that no longer matches its key rejects the reload
    and the old one stays."""
    monitor, _client = await daemon()
    port = monitor.bound[1]

    async def served() -> bytes:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return bytes(der)

    def der(path: Path) -> bytes:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
            serialization.Encoding.DER)

    before = await served()
    assert before == der(tmp_path / "server.crt")
    (tmp_path / "renewed").mkdir()
    renewed = make_cert(tmp_path / "renewed")
    (tmp_path / "server.crt").write_bytes(renewed[0].read_bytes())
    (tmp_path / "server.key").write_bytes(renewed[1].read_bytes())
    outcome = await monitor.reload()
    assert outcome.ok, outcome.errors
    assert await served() == der(renewed[0]) != before
    # A certificate whose key is another's: refused, the renewed one still served.
    other = make_cert(tmp_path / "renewed", "other")
    (tmp_path / "server.crt").write_bytes(other[0].read_bytes())
    outcome = await monitor.reload()
    assert not outcome.ok and "server.crt" in " ".join(outcome.errors)
    assert await served() == der(renewed[0])


# -- bridgemon passwd --------------------------------------------------------------------


def test_passwd_reads_stdin_and_prints_an_entry_that_loads(tmp_path: Path) -> None:
    done = run_cli("passwd", OPERATOR, "--role", "operator",
                   stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stdout.startswith(f'[[web.users]]\nname = "{OPERATOR}"\nrole = "operator"\n')
    hashed = re.search(r'password_hash = "(\$argon2id\$[^"]+)"', done.stdout)
    assert hashed is not None and PasswordHasher().verify(hashed.group(1), PASSWORD)
    config = load_config(write_config(tmp_path, "\n[web]\n" + done.stdout))
    assert [(u.name, u.role) for u in config.web.users] == [(OPERATOR, "operator")]


@pytest.mark.parametrize(("stdin", "wanted"), [
    ("ngắn-quá\n", "mật khẩu quá ngắn: cần ít nhất 10 ký tự"),
    (f"{PASSWORD}\n{OTHER_PASSWORD}\n", "the two lines differ"),
    ("", "no password on standard input"),
    ("x" * 1025 + "\n", "at most 1024 characters"),
])
def test_passwd_refuses_short_or_mismatched_passwords(stdin: str, wanted: str) -> None:
    done = run_cli("passwd", "an", stdin=stdin)
    assert done.returncode == 2 and wanted in done.stderr
    assert done.stdout == ""
    if stdin:
        assert stdin.split("\n")[0] not in done.stderr


def test_passwd_on_a_terminal_asks_twice_without_echo() -> None:
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: bridgemon on the terminal
        os.execve(sys.executable, [sys.executable, "-m", "bridgemon", "passwd", "an"],
                  {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    seen = b""

    def read_until(wanted: bytes | None, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while wanted is None or wanted not in seen:
            left = deadline - time.monotonic()
            assert left > 0, seen.decode(errors="replace")
            if not select.select([fd], [], [], left)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                assert wanted is None, seen.decode(errors="replace")
                return
            seen += chunk

    try:
        read_until("Mật khẩu".encode())
        os.write(fd, PASSWORD.encode() + b"\n")
        read_until("Nhập lại".encode())
        os.write(fd, PASSWORD.encode() + b"\n")
        read_until(None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert PASSWORD not in text  # never echoed, never printed
    hashed = re.search(r'password_hash = "(\$argon2id\$[^"]+)"', text)
    assert hashed is not None and PasswordHasher().verify(hashed.group(1), PASSWORD)
