"""The web app under bad input and hostile clients: 4xx JSON never 500, bounded bodies and
connections, browser-facing headers and CSP, no cross-site reloads. Real daemons on
loopback, raw sockets where a client library would refuse to send the bytes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from tests.conftest import free_port, needs_root
from tests.helpers import aget, await_for, write_inventory

pytestmark = needs_root
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "s3cret-token-for-tests-only"
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.67.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.67.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.67.2.10"},
]
FAST_TESTS = '\n[test]\ncount = 3\nspacing = "50ms"\ntimeout = "500ms"\n'

Starter = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    running: list[Monitor] = []

    async def starter(token: bool = True, configure: Callable[[Monitor], None] | None = None
                      ) -> Monitor:
        api = f'\n[api]\ntoken = "{TOKEN}"\n' if token else ""
        path = write_inventory(tmp_path / "sites.toml", SITES, port=free_port(),
                               interval="5s", extra=FAST_TESTS + api)
        text = path.read_text(encoding="utf-8").replace(
            "[monitor]\n", f'[monitor]\nstate_dir = "{tmp_path / "state"}"\n', 1)
        path.write_text(text, encoding="utf-8")
        monitor = Monitor(load_config(path))
        if configure is not None:
            configure(monitor)
        await monitor.start()
        running.append(monitor)
        return monitor

    yield starter
    for monitor in running:
        await monitor.stop()


def port(monitor: Monitor) -> int:
    assert monitor.bound is not None
    return monitor.bound[1]


def url(monitor: Monitor, path: str) -> str:
    return f"http://127.0.0.1:{port(monitor)}{path}"


Answer = tuple[int, dict[str, str], bytes]


async def raw_http(monitor: Monitor, method: str, path: str, body: bytes = b"",
                   headers: bytes = b"", host: bytes | None = None) -> Answer:
    """One request written byte for byte (no client library cleans it up), one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port(monitor))
    host = host or f"127.0.0.1:{port(monitor)}".encode()
    writer.write(f"{method} {path} HTTP/1.1\r\n".encode() + b"Host: " + host + b"\r\n"
                 + b"Connection: close\r\n"
                 + f"Content-Length: {len(body)}\r\n".encode() + headers + b"\r\n" + body)
    await writer.drain()
    try:
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return parse_answer(raw)


def parse_answer(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def auth(token: str = TOKEN) -> bytes:
    return f"Authorization: Bearer {token}\r\n".encode()


async def post_json(monitor: Monitor, path: str, body: object, extra: bytes = b""
                    ) -> tuple[int, Any]:
    status, headers, raw = await raw_http(monitor, "POST", path, json.dumps(body).encode(),
                                          auth() + extra)
    assert headers["content-type"].startswith("application/json"), (status, raw)
    return status, json.loads(raw)


# -- bad input is a 4xx JSON naming the field ----------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/test-runs", "/api/v1/events", "/-/reload"])
async def test_a_token_that_is_not_utf8_is_refused_not_a_crash(start: Starter,
                                                                path: str) -> None:
    monitor = await start()
    for token in (b"\xff", b"\xc3\x28", TOKEN.encode() + b"\xff"):
        status, headers, raw = await raw_http(monitor, "POST", path, b'{"select": "49"}',
                                              b"Authorization: Bearer " + token + b"\r\n")
        assert status == 401 and headers["content-type"].startswith("application/json")
        assert "Bearer" in json.loads(raw)["error"]


async def test_deep_large_and_slow_bodies_are_refused_with_json(start: Starter) -> None:
    monitor = await start(configure=lambda m: setattr(m, "http", _limits(body_timeout=1.0)))
    for body in (b"[" * 50_000, b'{"select": ' + b"[" * 50_000, b'{"count": 1' + b"0" * 5000
                 + b"}"):
        status, answer = await _post_raw(monitor, "/api/v1/test-runs", body)
        assert status == 400 and answer["field"] == "body", answer
    status, answer = await _post_raw(monitor, "/api/v1/events", b" " * 70_000 + b"{}")
    assert status == 413 and answer["field"] == "body", answer
    # Headers announce 100 bytes, 10 come: the answer comes when the body's time is up.
    reader, writer = await asyncio.open_connection("127.0.0.1", port(monitor))
    writer.write(b"POST /api/v1/test-runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                 + auth() + b"\r\n" + b'{"select":')
    await writer.drain()
    raw = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    writer.close()
    status, _, body = parse_answer(raw)
    assert status == 408 and json.loads(body)["field"] == "body"


def _limits(**changes: Any) -> Any:
    from dataclasses import replace

    from bridgemon.web.serving import HttpLimits

    return replace(HttpLimits(), **changes)


async def _post_raw(monitor: Monitor, path: str, body: bytes) -> tuple[int, Any]:
    status, headers, raw = await raw_http(monitor, "POST", path, body, auth())
    assert headers["content-type"].startswith("application/json"), (status, raw[:200])
    return status, json.loads(raw)


@pytest.mark.parametrize("select", ["", "   ", ",", " , "])
async def test_an_empty_selector_is_not_every_site(start: Starter, select: str) -> None:
    monitor = await start()
    status, answer = await post_json(monitor, "/api/v1/test-runs", {"select": select})
    assert status == 400 and answer["field"] == "select", answer
    runs = json.loads((await aget(url(monitor, "/api/v1/test-runs")))[1])["test_runs"]
    assert runs == []


def _event(**changes: Any) -> dict[str, Any]:
    later = (datetime.now(ZONE) + timedelta(days=2)).isoformat()
    return {"id": "hop", "title": "Giao ban", "start": later, "participants": "under:502",
            **changes}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start": "9999-12-31T23:00:00"}, "start"),
        ({"start": "9999-12-31T20:00:00-05:00"}, "start"),
        ({"start": "0001-01-01T00:00:00"}, "start"),
        ({"start": "0001-01-01T00:00:00+14:00"}, "start"),
        ({"pretests": ["99999999999d"]}, "pretests"),
        ({"pretests": ["24h", 1e16]}, "pretests"),
    ],
)
async def test_an_event_that_cannot_be_planned_is_a_400_and_is_not_saved(
    start: Starter, tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    monitor = await start()
    status, answer = await post_json(monitor, "/api/v1/events", _event(**changes))
    assert status == 400 and answer["field"].startswith(field), answer
    assert not (tmp_path / "state" / "events.json").exists()
    status, raw = await aget(url(monitor, "/api/v1/events"))
    assert status == 200 and json.loads(raw)["events"] == []
    status, _, _ = await raw_http(monitor, "POST", "/-/reload", b"", auth())
    assert status == 200
    await monitor.stop()
    again = await start()  # the same state directory
    status, answer = await post_json(again, "/api/v1/events", _event())
    assert status == 201, answer


# -- headers for browsers ------------------------------------------------------------------


def _style_sources(policy: str) -> list[str]:
    for directive in policy.split(";"):
        name, *sources = directive.split()
        if name == "style-src":
            return sources
    return []


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assert_page_obeys_its_policy(page: str, policy: str, *, own_files: bool = False) -> None:
    """What a browser would block under this CSP, found by reading the page independently.
    ``own_files``: a technician's page, whose stylesheet and one script are the daemon's
    own files (/static/), and nothing inline."""
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    sources = _style_sources(policy)
    blocks = re.findall(r"<style[^>]*>(.*?)</style>", page, re.DOTALL)
    assert all(_sha256(block) in sources for block in blocks)
    # No style attribute: a CSP allows those only with 'unsafe-hashes'.
    assert re.findall(r'\sstyle\s*=', page, re.IGNORECASE) == []
    assert not re.search(r"\son[a-z]+\s*=|<iframe", page, re.IGNORECASE)
    if not own_files:
        assert blocks and "script-src" not in policy
        assert not re.search(r"<script|<link|\ssrc=", page, re.IGNORECASE)
        return
    assert "script-src 'self';" in policy and "'self'" in sources
    # Every script is a file of the daemon's (no inline one), every stylesheet too.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL | re.IGNORECASE)
    assert scripts and all(re.search(r'\ssrc="/static/[\w.-]+\?v=\w+"', attrs) and not body
                           for attrs, body in scripts)
    links = re.findall(r"<link[^>]*>", page, re.IGNORECASE)
    assert links and all('href="/static/' in link for link in links)


async def test_answers_carry_browser_headers_and_pages_a_csp_they_obey(start: Starter) -> None:
    monitor = await start()
    for path in ("/", "/metrics", "/api/v1/sites", "/healthz", "/api/v1/events", "/nope"):
        status, headers, raw = await raw_http(monitor, "GET", path)
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["server"] == "bridgemon", path
        policy = headers["content-security-policy"]
        if path == "/":
            assert_page_obeys_its_policy(raw.decode(), policy, own_files=True)
        else:
            assert policy.startswith("default-src 'none'"), path
        if path == "/nope":
            assert status == 404 and "error" in json.loads(raw)
    # aiohttp's own answer to a request it cannot parse names no versions either
    reader, writer = await asyncio.open_connection("127.0.0.1", port(monitor))
    writer.write(b"GARBAGE\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status, headers, _ = parse_answer(raw)
    assert status == 400 and "aiohttp" not in headers.get("server", "")
    assert "python" not in headers.get("server", "").lower()

    # the printable report: its inline styles, and its column widths, allowed by hash
    status, answer = await post_json(monitor, "/api/v1/test-runs", {"select": "under:502"})
    assert status == 202
    run = answer["run_id"]

    async def finished() -> bool:
        status, raw = await aget(url(monitor, f"/api/v1/test-runs/{run}"))
        return status == 200 and json.loads(raw)["status"] == "complete"

    await await_for(finished, 20, "the test run")
    status, headers, raw = await raw_http(monitor, "GET", f"/api/v1/test-runs/{run}?format=html")
    assert status == 200
    # The report's column widths live in its style block: no style attribute to allow.
    assert_page_obeys_its_policy(raw.decode(), headers["content-security-policy"])


# -- no reload or test run from a web page --------------------------------------------------


async def test_reload_wants_the_token_and_refuses_other_sites(start: Starter) -> None:
    monitor = await start()
    own = f"http://127.0.0.1:{port(monitor)}".encode()
    status, _, raw = await raw_http(monitor, "POST", "/-/reload")
    assert status == 401 and "Bearer" in json.loads(raw)["error"]
    status, _, raw = await raw_http(monitor, "POST", "/-/reload", b"", auth("wrong" * 4))
    assert status == 401
    status, _, raw = await raw_http(monitor, "POST", "/-/reload", b"", auth())
    assert status == 200 and json.loads(raw)["ok"]
    status, _, raw = await raw_http(monitor, "POST", "/-/reload", b"",
                                    auth() + b"Origin: " + own + b"\r\n")
    assert status == 200
    refused = [
        b"Origin: http://evil.example\r\n",
        b"Origin: null\r\n",
        b"Origin: http://127.0.0.1:1\r\n",
        b"Sec-Fetch-Site: cross-site\r\n",
        b"Sec-Fetch-Site: same-site\r\n",
    ]
    for path in ("/-/reload", "/api/v1/test-runs", "/api/v1/events"):
        for header in refused:
            status, _, raw = await raw_http(monitor, "POST", path, b'{"select": "49"}',
                                            auth() + header)
            assert status == 403 and json.loads(raw)["field"] == "Origin", (path, header)
    # DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1, is same-origin
    status, _, raw = await raw_http(monitor, "POST", "/-/reload", b"",
                                    auth() + b"Origin: http://evil.example:%d\r\n" % port(monitor),
                                    host=b"evil.example:%d" % port(monitor))
    assert status == 403


async def test_without_a_token_reload_is_loopback_only_and_still_same_site(
    start: Starter,
) -> None:
    monitor = await start(token=False)
    status, _, raw = await raw_http(monitor, "POST", "/-/reload")
    assert status == 200 and json.loads(raw)["ok"]
    status, _, raw = await raw_http(monitor, "POST", "/-/reload", b"",
                                    b"Origin: http://evil.example\r\n")
    assert status == 403


# -- connections -----------------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_idle_connections_are_bounded_and_closed(start: Starter) -> None:
    limit, idle = 100, 2.0
    # A backlog that holds the whole burst: beyond it the kernel drops handshakes and the
    # clients retry them for seconds, which would measure the kernel, not the daemon.
    monitor = await start(configure=lambda m: setattr(
        m, "http", _limits(keepalive_timeout=idle, max_connections=limit, backlog=1024)))
    before = _fds()
    clients = await asyncio.gather(*(
        asyncio.open_connection("127.0.0.1", port(monitor)) for _ in range(600)
    ))
    try:
        await asyncio.sleep(0.5)  # every connection accepted (or refused) by now
        server_side = _fds() - before - len(clients)
        assert server_side <= limit + 5, server_side
        # a client beyond the limit is told so, in JSON, and closed
        answers = await asyncio.gather(*(
            asyncio.wait_for(reader.read(), idle + 3) for reader, _ in clients
        ))
        refused = [a for a in answers if a]
        assert len(refused) >= 600 - limit - 5
        assert all(parse_answer(a)[0] == 503 for a in refused)
        # every connection got EOF within the idle time: nothing is held on the server
        assert _fds() - before - len(clients) <= 2
    finally:
        for _, writer in clients:
            writer.close()
    await asyncio.sleep(0.2)
    assert _fds() <= before + 2
    status, _ = await aget(url(monitor, "/healthz"))
    assert status == 200

    # Headers trickling in a byte at a time do not keep a connection either.
    reader, writer = await asyncio.open_connection("127.0.0.1", port(monitor))
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    began = asyncio.get_running_loop().time()
    try:
        while not reader.at_eof() and asyncio.get_running_loop().time() - began < idle + 3:
            writer.write(b"x")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1024), 0.3)
        assert reader.at_eof(), "a connection sending its headers slowly was kept"
    finally:
        writer.close()


async def test_a_handler_that_fails_anyway_answers_json_without_its_traceback(
    start: Starter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The last line, reached only through a bug: one is injected into the snapshot."""
    monitor = await start()

    def broken() -> None:
        raise RuntimeError("injected: snapshot failed /secret/path")

    monkeypatch.setattr(monitor, "snapshot", broken)
    status, headers, raw = await raw_http(monitor, "GET", "/api/v1/sites")
    assert status == 500 and headers["content-type"].startswith("application/json")
    assert "error" in json.loads(raw) and b"secret" not in raw and b"Traceback" not in raw
    assert any("injected" in (record.exc_text or "") + str(record.exc_info)
               for record in caplog.records)
