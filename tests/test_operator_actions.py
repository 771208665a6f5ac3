"""What operators do on the pages: run the test now, take a site of a conference, leave a
note; and what a viewer, a forged form or bad input get instead. Real daemons on
127.0.0.1 with users (tests/test_web_auth.py's fixtures), real HTTP clients keeping cookies;
the database is the state directory's SQLite file, read again by a restarted daemon."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from bridgemon.events import ZONE
from bridgemon.testrun.notes import MAX_NOTE
from tests.conftest import needs_root
from tests.test_web_auth import (  # noqa: F401 - daemon is a fixture
    OPERATOR,
    PASSWORD,
    TOKEN,
    VIEWER,
    Browserish,
    daemon,
    web_toml,
    write_config,
)

EVENT = "giao-ban-thang-12"
PAGE = {"Accept": "text/html,application/xhtml+xml"}  # what a browser's form post sends
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SECRET_NOTE = "mật khẩu wifi hội trường là hoa-sen-2026"  # people paste anything in a note


def event_toml(title: str = "Giao ban tháng 12 <b>", participants: str = "under:49") -> str:
    # Three days ahead, its only pre-test one hour before: nothing runs by itself here.
    start = (datetime.now(ZONE) + timedelta(days=3)).replace(microsecond=0)
    return (f'\n[[events]]\nid = "{EVENT}"\ntitle = "{title}"\n'
            f'start = "{start.isoformat()}"\nduration = "2h"\n'
            f'participants = "{participants}"\npretests = ["1h"]\n')


# Every site misses a threshold of microseconds: "not ready", for the overview's urgent list.
STRICT = '\n[profiles.default.thresholds]\nrtt_good = "0.001ms"\nrtt_bad = "0.002ms"\n'


@pytest.fixture
def served(daemon: Any) -> Any:  # noqa: F811 - test_web_auth's fixture: daemons started here
    return daemon


async def start(served: Any, *, strict: bool = False) -> tuple[Monitor, Any]:
    return await served(web_toml(tls=False) + event_toml() + (STRICT if strict else ""))


async def signed_in(make: Any, name: str) -> Browserish:
    browser: Browserish = make()
    status, _, body = await browser.sign_in(name)
    assert status == 303, body
    return browser


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


def message(page: str) -> str:
    match = re.search(r'<p id="message">(.*?)</p>', page, re.DOTALL)
    assert match is not None, page
    return html.unescape(match.group(1))


async def runs_of(browser: Browserish) -> list[dict[str, Any]]:
    status, _, body = await browser.request("GET", f"/api/v1/test-runs?event={EVENT}")
    assert status == 200, body
    runs: list[dict[str, Any]] = json.loads(body)["test_runs"]
    return runs


async def acks(browser: Browserish) -> list[dict[str, Any]]:
    status, _, body = await browser.request("GET", f"/api/v1/events/{EVENT}/acks")
    assert status == 200, body
    held: list[dict[str, Any]] = json.loads(body)["acks"]
    return held


async def notes(browser: Browserish, site: str = "502") -> list[dict[str, Any]]:
    status, _, body = await browser.request("GET", f"/api/v1/sites/{site}/notes")
    assert status == 200, body
    found: list[dict[str, Any]] = json.loads(body)["notes"]
    return found


async def wait_finished(browser: Browserish, run_id: str) -> dict[str, Any]:
    for _ in range(200):
        status, _, body = await browser.request("GET", f"/api/v1/test-runs/{run_id}")
        if status == 200 and json.loads(body).get("finished_at"):
            report: dict[str, Any] = json.loads(body)
            return report
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {body}")


# -- run the test now ------------------------------------------------------------------


@needs_root
async def test_an_operator_runs_the_test_now_and_lands_on_its_page(served: Any) -> None:
    _, make = await start(served)
    operator = await signed_in(make, OPERATOR)
    status, _, page = await operator.request("GET", f"/events/{EVENT}")
    assert status == 200, page
    assert "Chạy kiểm tra ngay" in page
    assert f'action="/events/{EVENT}/test-runs"' in page
    status, headers, body = await operator.request(
        "POST", f"/events/{EVENT}/test-runs", data={"csrf_token": form_token(page)},
        headers=PAGE)
    assert status == 303, body
    location = headers["Location"]
    assert re.fullmatch(r"/test-runs/[0-9T]+-[0-9a-f]+", location), location
    run_id = location.rsplit("/", 1)[1]
    # The run page answers at once (the run was begun before the redirect) and says who.
    status, _, run_page = await operator.request("GET", location)
    assert status == 200, run_page
    assert run_id in run_page and OPERATOR in run_page
    report = await wait_finished(operator, run_id)
    assert report["event"] == EVENT and report["trigger"] == "api"
    assert report["operator"].startswith(f"{OPERATOR} (")
    assert {site["id"] for site in report["sites"]} == {"49", "502"}
    assert [run["run_id"] for run in await runs_of(operator)] == [run_id]


@needs_root
async def test_a_viewer_gets_no_button_and_a_forged_post_is_refused_with_a_page(
        served: Any) -> None:
    _, make = await start(served)
    viewer = await signed_in(make, VIEWER)
    status, _, page = await viewer.request("GET", f"/events/{EVENT}")
    assert status == 200, page
    assert "Chạy kiểm tra ngay" not in page and "Tôi nhận xử lý" not in page
    assert 'class="ack-form"' not in page
    status, _, site_page = await viewer.request("GET", "/sites/502")
    assert status == 200 and "Lưu ghi chú" not in site_page
    # The viewer forges the forms with their own session's valid CSRF token.
    token = await viewer.csrf()
    for path, form in ((f"/events/{EVENT}/test-runs", {}),
                       (f"/events/{EVENT}/acks", {"site": "502", "note": "x"}),
                       ("/sites/502/notes", {"text": "x"})):
        status, headers, body = await viewer.request(
            "POST", path, data={"csrf_token": token, **form}, headers=PAGE)
        assert status == 403, (path, body)
        assert headers["Content-Type"].startswith("text/html"), path
        assert message(body) == "tài khoản chỉ được xem, không được thao tác (operator " \
                                "role required)", path
    assert await runs_of(viewer) == []
    assert await acks(viewer) == [] and await notes(viewer) == []


@needs_root
async def test_a_missing_or_forged_csrf_token_is_a_403_page_and_nothing_is_done(
        served: Any) -> None:
    _, make = await start(served)
    operator = await signed_in(make, OPERATOR)
    for token in (None, "forged", ""):
        sent = {} if token is None else {"csrf_token": token}
        for path, form in ((f"/events/{EVENT}/test-runs", {}),
                           (f"/events/{EVENT}/acks", {"site": "502", "note": "x"}),
                           ("/sites/502/notes", {"text": "x"}),
                           ("/logout", {})):
            status, headers, body = await operator.request(
                "POST", path, data={**sent, **form}, headers=PAGE)
            assert status == 403, (path, token, body)
            assert headers["Content-Type"].startswith("text/html"), (path, body)
            assert "CSRF" in message(body) and "không đúng" in message(body)
    assert await runs_of(operator) == []
    assert await acks(operator) == [] and await notes(operator) == []
    assert (await operator.request("GET", "/api/v1/sites"))[0] == 200  # still signed in


@needs_root
async def test_a_post_without_a_session_is_a_401_page_that_links_to_sign_in(
        served: Any) -> None:
    _, make = await start(served)
    stranger = make()
    token = await stranger.csrf_from_login_page()  # a real cookie-bound token, no session
    status, headers, body = await stranger.request(
        "POST", f"/events/{EVENT}/test-runs", data={"csrf_token": token}, headers=PAGE)
    assert status == 401, body
    assert headers["Content-Type"].startswith("text/html")
    assert "Cần đăng nhập" in body and 'href="/login?next=' in body
    # A script asking the same gets JSON, as before.
    status, headers, body = await stranger.request("POST", f"/events/{EVENT}/test-runs")
    assert status == 401 and headers["Content-Type"].startswith("application/json")
    # Unknown pages answer a browser with a page too.
    operator = await signed_in(make, OPERATOR)
    status, headers, body = await operator.request("GET", "/no/such/page", headers=PAGE)
    assert status == 404 and headers["Content-Type"].startswith("text/html"), body


# -- acknowledgements and notes --------------------------------------------------------


@needs_root
async def test_acks_and_notes_show_on_the_conference_site_and_overview_pages(
        served: Any) -> None:
    _, make = await start(served, strict=True)
    operator = await signed_in(make, OPERATOR)
    _, _, page = await operator.request("GET", f"/events/{EVENT}")
    token = form_token(page)
    status, headers, body = await operator.request(
        "POST", f"/events/{EVENT}/acks", headers=PAGE,
        data={"csrf_token": token, "site": "502", "note": "Đã gọi anh Tín, <b>đang</b> "
                                                            "khởi động lại codec"})
    assert status == 303, body
    assert headers["Location"] == f"/events/{EVENT}#site-502"
    # The conference page: who took it, since when, the note (as text, not markup).
    _, _, page = await operator.request("GET", f"/events/{EVENT}")
    row = page[page.index('id="site-502"'):]
    row = row[:row.index("</tr>")]
    assert f'class="holder">{OPERATOR}</b>' in row
    assert "Đã gọi anh Tín, &lt;b&gt;đang&lt;/b&gt; khởi động lại codec" in row
    assert "Trả lại" in row and "Tôi nhận xử lý" not in row
    # The API says the same; a second operator cannot take it over silently.
    assert [(a["site"], a["user"]) for a in await acks(operator)] == [("502", OPERATOR)]
    status, _, body = await operator.request(
        "POST", f"/api/v1/events/{EVENT}/acks", headers=BEARER,
        json={"site": "502", "note": "của tôi"})
    assert status == 409 and json.loads(body)["field"] == "site"
    assert OPERATOR in json.loads(body)["error"]
    # Notes: one from the page's form, one from a script; newest first on the site page.
    _, _, site_page = await operator.request("GET", "/sites/502")
    status, headers, body = await operator.request(
        "POST", "/sites/502/notes", headers=PAGE,
        data={"csrf_token": form_token(site_page), "text": "Dòng 1\r\nDòng 2"})
    assert status == 303 and headers["Location"] == "/sites/502#site-notes", body
    status, _, body = await operator.request("POST", "/api/v1/sites/502/notes",
                                             headers=BEARER, json={"text": "ghi chú thứ hai"})
    assert status == 201, body
    assert [n["text"] for n in await notes(operator)] == ["ghi chú thứ hai", "Dòng 1\nDòng 2"]
    _, _, site_page = await operator.request("GET", "/sites/502")
    section = site_page[site_page.index('id="site-notes"'):]
    assert section.index("ghi chú thứ hai") < section.index("Dòng 1")
    assert f"<b>{OPERATOR}</b> đang xử lý cho hội nghị" in section
    # The overview: next to the not-ready site someone took, who.
    await wait_judged(operator)
    _, _, overview = await operator.request("GET", "/")
    urgent = overview[overview.index('id="urgent-502"'):]
    assert f"Đang xử lý: {OPERATOR}" in urgent[:urgent.index("</tr>")]
    assert "Đang xử lý" not in overview[overview.index('id="urgent-49"'):][:400]



@needs_root
async def test_acks_and_notes_persist_across_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, web_toml(tls=False) + event_toml())
    note = "Đã gọi anh Tín, <b>đang</b> khởi động lại codec"
    for life in range(2):
        monitor = Monitor(load_config(path))
        await monitor.start()
        assert monitor.bound is not None
        browser = Browserish(f"http://127.0.0.1:{monitor.bound[1]}", None)
        try:
            assert (await browser.sign_in(OPERATOR))[0] == 303
            if life == 0:
                _, _, page = await browser.request("GET", f"/events/{EVENT}")
                for path_, form in ((f"/events/{EVENT}/acks", {"site": "502", "note": note}),
                                    ("/sites/502/notes", {"text": "ghi chú 1"}),
                                    ("/sites/502/notes", {"text": "ghi chú 2"})):
                    status, _, body = await browser.request(
                        "POST", path_, headers=PAGE,
                        data={"csrf_token": form_token(page), **form})
                    assert status == 303, body
            # The second life reads what the first one stored, from the state directory.
            assert [(a["site"], a["user"], a["note"]) for a in await acks(browser)] == [
                ("502", OPERATOR, note)]
            assert [n["text"] for n in await notes(browser)] == ["ghi chú 2", "ghi chú 1"]
            _, _, page = await browser.request("GET", f"/events/{EVENT}")
            assert f'class="holder">{OPERATOR}</b>' in page
        finally:
            await browser.close()
            await monitor.stop()


async def wait_judged(browser: Browserish) -> None:
    for _ in range(100):
        _, _, body = await browser.request("GET", "/api/v1/sites")
        if json.loads(body)["summary"]["unknown"] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("sites not judged")


@needs_root
async def test_release_gives_the_site_back_to_anyone(served: Any) -> None:
    _, make = await start(served)
    operator = await signed_in(make, OPERATOR)
    status, _, body = await operator.request("POST", f"/api/v1/events/{EVENT}/acks",
                                             headers=BEARER, json={"site": "49"})
    assert status == 201 and json.loads(body)["user"].startswith("api (")
    _, _, page = await operator.request("GET", f"/events/{EVENT}")
    status, _, body = await operator.request(
        "POST", f"/events/{EVENT}/acks", headers=PAGE,
        data={"csrf_token": form_token(page), "site": "49", "action": "release"})
    assert status == 303, body
    assert await acks(operator) == []
    status, _, body = await operator.request(
        "POST", f"/api/v1/events/{EVENT}/acks", headers=BEARER,
        json={"site": "49", "action": "release"})
    assert status == 200 and json.loads(body) == {"released": None}


@needs_root
async def test_bad_input_gets_a_clear_answer_and_stores_nothing(served: Any) -> None:
    _, make = await start(served)
    operator = await signed_in(make, OPERATOR)
    _, _, page = await operator.request("GET", "/sites/502")
    token = form_token(page)
    too_long = "ư" * (MAX_NOTE + 1)
    cases = [
        # (path, form, status, words of the message)
        ("/sites/502/notes", {"text": too_long}, 400, f"tối đa {MAX_NOTE}"),
        ("/sites/502/notes", {"text": "   "}, 400, "trống"),
        ("/sites/khong-co/notes", {"text": "x"}, 404, "Không có điểm cầu mã 'khong-co'"),
        ("/sites/502/notes", {"text": "x", "event": "khong-co"}, 404, "Không có hội nghị"),
        (f"/events/{EVENT}/acks", {"site": "502", "note": too_long}, 400, f"tối đa {MAX_NOTE}"),
        (f"/events/{EVENT}/acks", {"site": "khong-co"}, 404, "không tham gia hội nghị"),
        (f"/events/{EVENT}/acks", {}, 400, "Chưa chọn điểm cầu"),
        ("/events/khong-co/acks", {"site": "502"}, 404, "Không có hội nghị mã 'khong-co'"),
        ("/events/khong-co/test-runs", {}, 404, "Không có hội nghị mã 'khong-co'"),
    ]
    for path, form, status, words in cases:
        got, headers, body = await operator.request(
            "POST", path, data={"csrf_token": token, **form}, headers=PAGE)
        assert (got, headers["Content-Type"].split(";")[0]) == (status, "text/html"), \
            (path, form.keys(), body[:300])
        assert words in message(body), (path, message(body))
    # The API: the same rules, JSON naming the field.
    for path, body_sent, status, field in [
        ("/api/v1/sites/502/notes", {"text": too_long}, 400, "text"),
        ("/api/v1/sites/502/notes", {"text": 5}, 400, "text"),
        ("/api/v1/sites/502/notes", {"text": "x", "extra": 1}, 400, "extra"),
        ("/api/v1/sites/khong-co/notes", {"text": "x"}, 404, "site"),
        (f"/api/v1/events/{EVENT}/acks", {"site": "502", "note": too_long}, 400, "note"),
        (f"/api/v1/events/{EVENT}/acks", {"site": "502", "action": "steal"}, 400, "action"),
        (f"/api/v1/events/{EVENT}/acks", {"site": ["502"]}, 400, "site"),
        ("/api/v1/events/khong-co/acks", {"site": "502"}, 404, "event"),
    ]:
        got, _, answer = await operator.request("POST", path, json=body_sent, headers=BEARER)
        assert (got, json.loads(answer).get("field")) == (status, field), (path, answer)
    assert await notes(operator) == [] and await acks(operator) == []
    # At the bound exactly: stored, whole.
    status, _, answer = await operator.request(
        "POST", "/api/v1/sites/502/notes", json={"text": "ư" * MAX_NOTE}, headers=BEARER)
    assert status == 201, answer
    assert [len(n["text"]) for n in await notes(operator)] == [MAX_NOTE]
    # Reads of unknown things are 404s too.
    assert (await operator.request("GET", "/api/v1/sites/khong-co/notes"))[0] == 404
    assert (await operator.request("GET", "/api/v1/events/khong-co/acks"))[0] == 404


@needs_root
async def test_nothing_logged_holds_a_note_or_a_password(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, make = await start(served)
    operator = await signed_in(make, OPERATOR)
    _, _, page = await operator.request("GET", f"/events/{EVENT}")
    token = form_token(page)
    await operator.request("POST", f"/events/{EVENT}/acks", headers=PAGE,
                           data={"csrf_token": token, "site": "502", "note": SECRET_NOTE})
    await operator.request("POST", "/sites/502/notes", headers=PAGE,
                           data={"csrf_token": token, "text": SECRET_NOTE})
    await operator.request("POST", "/sites/502/notes", headers=PAGE,
                           data={"csrf_token": token, "text": SECRET_NOTE * 40})  # refused
    assert [a["note"] for a in await acks(operator)] == [SECRET_NOTE]
    assert [n["text"] for n in await notes(operator)] == [SECRET_NOTE]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "taken by" in logged and "note 1 on site 502" in logged  # it does log, though
    assert "hoa-sen" not in logged and PASSWORD not in logged


# -- who is signed in ------------------------------------------------------------------


@needs_root
async def test_pages_say_who_is_signed_in_and_sign_out_by_their_form(served: Any) -> None:
    _, make = await start(served)
    viewer = await signed_in(make, VIEWER)
    for path in ("/", "/sites/502", f"/events/{EVENT}"):
        status, _, page = await viewer.request("GET", path)
        assert status == 200, page
        assert f'<b id="signed-in">{VIEWER}</b> (chỉ xem)' in page, path
        assert '<form method="post" action="/logout"' in page, path
    status, headers, _ = await viewer.request("POST", "/logout", headers=PAGE,
                                              data={"csrf_token": form_token(page)})
    assert status == 303 and headers["Location"] == "/login"
    assert (await viewer.request("GET", "/", headers=PAGE))[0] == 303  # to the sign-in page
    operator = await signed_in(make, OPERATOR)
    _, _, page = await operator.request("GET", "/")
    assert f'<b id="signed-in">{OPERATOR}</b> (vận hành)' in page


@needs_root
async def test_without_users_the_monitoring_host_operates_with_a_cookie_bound_token(
        served: Any) -> None:
    _, make = await served(web_toml(tls=False, users=False) + event_toml())
    local = make()
    status, _, page = await local.request("GET", f"/events/{EVENT}")
    assert status == 200 and "Chạy kiểm tra ngay" in page and 'id="signed-in"' not in page
    status, _, body = await local.request("POST", f"/events/{EVENT}/acks", headers=PAGE,
                                          data={"site": "502"})
    assert status == 403 and "CSRF" in message(body)
    status, _, body = await local.request(
        "POST", f"/events/{EVENT}/acks", headers=PAGE,
        data={"csrf_token": form_token(page), "site": "502", "note": "trực ban"})
    assert status == 303, body
    assert [(a["user"], a["note"]) for a in await acks(local)] == [
        ("máy giám sát (127.0.0.1)", "trực ban")]
