"""Report formats from the report dict: table, JSON (against the schema), CSV, HTML."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from rich.cells import cell_len
from rich.console import Console

from bridgemon.probes.result import EchoBurst, ProbeResult
from bridgemon.report import FORMATS, print_table, render
from bridgemon.report.common import num, pct, vi_numbers, when
from bridgemon.report.csvout import COLUMNS, render_csv
from bridgemon.report.html import render_html
from bridgemon.report.table import render_table
from bridgemon.views import check_json
from tests.report_samples import REPO, big_report, header, sample_report, sample_sites

SCHEMA = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def schema_errors(document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(document)]


def incomplete_report() -> dict[str, Any]:
    """A run cut short after four sites, as History.get() returns it."""
    report = sample_report(status="incomplete", finished_at=None, summary=None)
    report["sites"] = report["sites"][:4]
    return report


# --- dispatch ----------------------------------------------------------------------------


def test_render_every_format_and_refuse_others() -> None:
    report = sample_report()
    for fmt in FORMATS:
        text = render(report, fmt)
        assert isinstance(text, str) and "Phường Tân Thạnh" in text
    for bad in ("xml", "pdf", "", "HTML"):
        with pytest.raises(ValueError, match="unknown report format"):
            render(report, bad)


def test_every_format_renders_bare_and_empty_reports() -> None:
    """Only the schema's required keys, or no sites at all: still a report, never a crash."""
    bare = {"run_id": "20261127T101500-0000", "started_at": None, "finished_at": None,
            "event": None, "summary": {"total": 1, "ready": 1},
            "sites": [{"id": "1", "name": "A", "level": "commune", "parent": None,
                       "verdict": "ready", "reasons": [], "mos": None, "checks": []}]}
    empty = {**header(), "sites": []}
    for report in (bare, empty):
        for fmt in FORMATS:
            assert render(report, fmt)
    assert "Tổng số 0 điểm cầu" in render(empty, "table")


# --- JSON and its schema ---------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_json_is_the_report_itself_with_vietnamese_unescaped() -> None:
    report = sample_report()
    text = render(report, "json")
    assert json.loads(text) == report
    assert "UBND tỉnh Quảng Nam" in text and "\\u" not in text  # ensure_ascii=False
    assert text.startswith('{\n  "run_id": ')  # indent=2


@pytest.mark.parametrize("make", [sample_report, big_report, incomplete_report],
                         ids=["sample", "260 sites", "incomplete"])
def test_fixtures_validate_against_schema(make: Any) -> None:
    assert schema_errors(json.loads(render(make(), "json"))) == []


def test_running_report_without_sites_validates() -> None:
    assert schema_errors({**header(), "sites": []}) == []


def test_checks_made_by_views_validate_against_schema() -> None:
    """The schema describes what the code produces, not only the hand-made fixtures."""
    checks = [
        check_json(ProbeResult("icmp", "icmp", "127.49.2.10", True, 0.0, 5.0,
                               burst=EchoBurst("127.49.2.10", (0.012, None, 0.0135, 0.011)))),
        check_json(ProbeResult("icmp", "icmp", "127.49.3.1", False, 0.0, 5.0,
                               reason="no reply", burst=EchoBurst("127.49.3.1", (None,) * 5))),
        check_json(ProbeResult("sip", "sip", "sip:127.49.0.1:5060", False, 0.0, 4.0,
                               reason="SIP OPTIONS: no answer in 4 s",
                               details={"status_code": None, "transport": "udp"})),
    ]
    report = sample_report()
    report["sites"][0]["checks"] = checks
    assert schema_errors(report) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda r: r["sites"][2]["checks"][0].pop("loss_ratio"), "loss_ratio"),
        (lambda r: r["sites"][0].update(verdict="ok"), "verdict"),
        (lambda r: r.update(started_at="2026-11-27 17:15:00"), "started_at"),
        (lambda r: r.update(started_at="2026-11-27T17:15:00"), "started_at"),  # no offset
        (lambda r: r.update(finished_at=None), "finished_at"),  # complete needs an end
        (lambda r: r.update(summary=None), "summary"),  # ... and a summary
        (lambda r: r["summary"].pop("parent_down"), "parent_down"),
        (lambda r: r.update(status="done"), "status"),
        (lambda r: r.update(run_id="run 1"), "run_id"),
        (lambda r: r["sites"][0].update(mos=7.0), "mos"),
        (lambda r: r["sites"][0]["checks"][0].update(ok="yes"), "ok"),
        (lambda r: r.update(trigger="cron"), "trigger"),
    ],
)
def test_schema_rejects_broken_reports(change: Any, complaint: str) -> None:
    report = sample_report()
    change(report)
    errors = schema_errors(report)
    assert errors and any(complaint in error for error in errors), errors


# --- number and time formatting ---------------------------------------------------------


def test_vietnamese_numbers() -> None:
    assert num(12.5) == "12,5"
    assert num(1234.56) == "1.234,6"
    assert num(4.3125, 2) == "4,31"
    assert num(12000, 0) == "12.000"
    assert num(None) == num(float("nan")) == "—"
    assert pct(0.075) == "7,5 %"
    assert pct(0.08) == "8 %"
    assert pct(1.0) == "100 %"
    assert pct(0.0) == "0 %"


def test_reason_numbers_turn_vietnamese_but_addresses_do_not() -> None:
    assert vi_numbers("mất gói 7.5 % > 5 %") == "mất gói 7,5 % > 5 %"
    assert vi_numbers("độ trễ 182.4 ms > 150 ms") == "độ trễ 182,4 ms > 150 ms"
    assert vi_numbers("SIP OPTIONS: no answer in 4.5 s") == "SIP OPTIONS: no answer in 4,5 s"
    for untouched in ("no route to 127.49.2.10", "TLS 1.2 handshake failed",
                      "HTTP 503 from 10.0.0.1", "version 1.2.3 ms"):
        assert vi_numbers(untouched) == untouched


def test_times_are_shown_in_the_reports_offset_whatever_this_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert when("2026-11-27T17:15:00+07:00") == "17:15:00 27/11/2026"
    assert when("2026-11-27T10:15:00+00:00") == "10:15:00 27/11/2026 (UTC+00:00)"
    assert when("2026-12-01T08:00:00+07:00", seconds=False) == "08:00 01/12/2026"
    assert when(None) == "—"


# --- table -------------------------------------------------------------------------------


def test_table_worst_first_grouped_by_parent() -> None:
    text = render_table(sample_report())
    lines = text.splitlines()
    headings = [line.removeprefix("▸ ").strip() for line in lines if line.startswith("▸")]
    # Groups by their worst site; within a group worst first.
    assert headings == ["UBND tỉnh Quảng Nam (49)", "Thành phố Tam Kỳ (502)",
                        "Huyện Tây Giang (504)", "Thành phố Hội An (503)", "Cấp cao nhất"]

    def position(name: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(name))

    assert position("Phường Tân Thạnh") < position("Phường Hòa Hương") < position("Phường An Mỹ")
    assert position("Xã Ga Ri") < position("Xã Ch'ơm")  # not ready before unknown
    row = lines[position("Phường Tân Thạnh")]
    assert "Chưa sẵn sàng" in row and "22,2/24,6" in row and "8 %" in row and "3,71" in row
    assert "mất gói 8 % > 5 %" in row
    assert "độ trễ 182,4 ms" in text  # reason numbers in Vietnamese style too
    assert "1.234,5/1.236,4" in text
    assert "20335 · 127.49.2.10" in text  # id and address under the name
    assert "kiểm tra sip lỗi: SIP" in text
    assert "Mất kết nối" in text and "cấp trên" in text


def test_table_header_and_footer() -> None:
    text = render_table(sample_report())
    assert text.startswith(
        "KIỂM TRA KẾT NỐI ĐIỂM CẦU — Hội nghị trực tuyến UBND tỉnh tháng 12 (hop-ubnd-2026-12)")
    assert "Hội nghị bắt đầu: 08:00 01/12/2026" in text
    assert "Kiểm tra lúc: 17:15:00 27/11/2026 (trong 42 giây)" in text
    assert "Người kiểm tra: root@cau-truyen-hinh (dòng lệnh)" in text
    assert "Mã lần kiểm tra: 20261127T101500-3f9a" in text
    assert text.rstrip().endswith(
        "Tổng số 13 điểm cầu\nSẵn sàng 3 · Suy giảm 3 · Chưa sẵn sàng 4 · "
        "Mất kết nối cấp trên 2 · Chưa rõ 1")


def test_table_fits_100_columns_and_plain_text_has_no_colour() -> None:
    for report in (sample_report(), big_report()):
        text = render_table(report)
        assert not ANSI.search(text)
        widths = [cell_len(line) for line in text.splitlines()]
        assert max(widths) <= 100, max(widths)
        assert all(line == line.rstrip() for line in text.splitlines())
    coloured = render_table(sample_report(), color=True)
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured).replace(" ", "").replace("\n", "") == \
        render_table(sample_report()).replace(" ", "").replace("\n", "")


def test_print_table_on_a_no_color_console() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, no_color=True)
    print_table(sample_report(), console)
    text = out.getvalue()
    assert "Chưa sẵn sàng" in text and "Phường Tân Thạnh" in text
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", text)  # no foreground colours


def test_table_problems_only_and_incomplete_run() -> None:
    text = render_table(big_report(), problems_only=True)
    assert "Sẵn sàng  " not in text  # no ready row
    assert re.search(r"\(\d+ điểm cầu sẵn sàng không liệt kê\)", text)
    text = render_table(incomplete_report())
    assert "CHÚ Ý: lần kiểm tra bị gián đoạn" in text
    assert "Tổng số 4 điểm cầu" in text  # counted from the sites there are


MARKUP = ["[/]", "[bold]", "[/bold]", "[link=x]", ":warning:", "[red]"]


@settings(max_examples=25, deadline=None)
@given(
    parts=st.lists(st.sampled_from(MARKUP) | st.text(alphabet="[]/=:ab ", max_size=6),
                   min_size=1, max_size=5).map("".join),
)
def test_table_prints_markup_in_the_data_as_written(parts: str) -> None:
    """Names, reasons, the event, the operator and the selector are data: a "[/]" or a
    "[bold]" in them is printed as written (rich markup would crash or style it)."""
    report = sample_report()
    report.update(event_title=f"Hội nghị {parts}", operator=f"kỹ thuật {parts}",
                  selector=f"under:502 {parts}")
    site = report["sites"][0]
    # the name column is 22 wide and folds: a name that fits it
    site.update(name="UBND [/] [bold]x", reasons_vi=[f"lý do {parts}"], parent_name=parts)
    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=True, color_system="standard")
    print_table(report, console)
    plain = ANSI.sub("", out.getvalue())
    for text in (f"Hội nghị {parts}", f"Người kiểm tra: kỹ thuật {parts}",
                 f"Phạm vi: under:502 {parts}", "UBND [/] [bold]x", f"lý do {parts}"):
        assert text.rstrip() in plain, text


def test_table_at_80_columns_stays_within_80() -> None:
    text = render_table(sample_report(), width=80)
    assert max(cell_len(line) for line in text.splitlines()) <= 80


# --- CSV ---------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    data = text.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM for Excel"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_reads_back() -> None:
    report = sample_report()
    text = render(report, "csv")
    assert "\r\n" in text
    rows = read_csv(text)
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(report["sites"])
    assert [row["Mã (id)"] for row in rows] == [site["id"] for site in report["sites"]]
    tan_thanh = next(row for row in rows if row["Mã (id)"] == "20335")
    assert tan_thanh["Điểm cầu (site)"] == "Phường Tân Thạnh"
    assert tan_thanh["Cấp trên (parent)"] == "Thành phố Tam Kỳ"
    assert tan_thanh["Kết quả (verdict)"] == "Chưa sẵn sàng"
    assert tan_thanh["Mã kết quả (verdict code)"] == "not_ready"
    assert (tan_thanh["Gói gửi (sent)"], tan_thanh["Gói nhận (received)"]) == ("50", "46")
    assert float(tan_thanh["Mất gói % (loss %)"]) == 8.0
    icmp = report["sites"][2]["checks"][0]
    assert float(tan_thanh["RTT trung bình ms (RTT avg)"]) == pytest.approx(
        icmp["rtt_ms"]["avg"], abs=0.001)
    assert float(tan_thanh["Jitter ms (jitter)"]) == pytest.approx(icmp["jitter_ms"], abs=0.001)
    assert float(tan_thanh["MOS"]) == pytest.approx(report["sites"][2]["mos"], abs=0.005)
    assert tan_thanh["Nguyên nhân (reasons, vi)"] == "mất gói 8 % > 5 %"
    assert tan_thanh["Cán bộ kỹ thuật (contact)"] == "Nguyễn Thị Ánh Tuyết"
    assert tan_thanh["Điện thoại (phone)"] == "0914 222 333"
    assert tan_thanh["Mã lần kiểm tra (run id)"] == report["run_id"]
    phuoc_hoa = next(row for row in rows if row["Mã (id)"] == "20338")
    assert phuoc_hoa["Kiểm tra dịch vụ lỗi (failing checks)"] == \
        "sip: SIP OPTIONS: no answer in 4 s"
    hoi_an = next(row for row in rows if row["Mã (id)"] == "503")
    assert hoi_an["RTT trung bình ms (RTT avg)"] == "" and hoi_an["Mất gói % (loss %)"] == "100"
    ch_om = next(row for row in rows if row["Mã (id)"] == "20437")
    assert ch_om["Điểm cầu (site)"] == "Xã Ch'ơm" and ch_om["Gói gửi (sent)"] == ""


def test_csv_decimal_comma_and_no_bom() -> None:
    text = render_csv(sample_report(), decimal=",", bom=False)
    assert not text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[2]["RTT trung bình ms (RTT avg)"] == "22,237"
    with pytest.raises(ValueError):
        render_csv(sample_report(), decimal=";")


def test_csv_neutralises_formulas() -> None:
    report = sample_report()
    report["sites"][0]["name"] = "=HYPERLINK(\"http://x\",\"bấm\")"
    report["sites"][3]["checks"][1]["reason"] = "+SIP 403 -cmd"
    rows = read_csv(render(report, "csv"))
    assert rows[0]["Điểm cầu (site)"] == "'=HYPERLINK(\"http://x\",\"bấm\")"
    assert rows[3]["Kiểm tra dịch vụ lỗi (failing checks)"].startswith("sip: +SIP")  # mid-cell
    report["sites"][3]["name"] = "-1"
    assert read_csv(render(report, "csv"))[3]["Điểm cầu (site)"] == "'-1"


# --- HTML --------------------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of the report page the tests look at, as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.head_cells: list[str] = []
        self.summary: dict[str, str] = {}
        self.style = ""
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._row: dict[str, Any] | None = None
        self._summary_key: str | None = None
        self._in_style = False

    def _break(self, tag: str) -> None:
        """A tag that starts a new line on the page separates words in the text too."""
        if tag in ("div", "li", "ul", "br", "p", "b"):
            if self._cell is not None:
                self._cell.append(" ")
            if self._summary_key is not None:
                self.summary[self._summary_key] += " "

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._break(tag)
        if tag in ("br", "meta", "col", "img", "link", "input"):
            return
        self._stack.append(tag)
        if tag == "style":
            self._in_style = True
        if tag == "tr" and "tbody" in self._stack:
            self._row = {"attrs": attributes, "cells": [], "badge": None, "problems": []}
        if tag in ("td", "th"):
            self._cell = []
        if tag == "span" and self._row is not None and "badge" in (attributes.get("class") or ""):
            self._row["badge"] = attributes.get("class")
        if tag == "li" and self._row is not None:
            self._row["problems"].append("")
        verdict = attributes.get("data-verdict")
        if tag == "div" and verdict:
            self._summary_key = verdict
            self.summary[verdict] = ""

    def handle_endtag(self, tag: str) -> None:
        self._break(tag)
        while self._stack and self._stack.pop() != tag:
            pass
        if tag == "style":
            self._in_style = False
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._row is not None:
                self._row["cells"].append(text)
            elif tag == "th":
                self.head_cells.append(text)
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "div" and self._summary_key is not None and "div" not in self._stack[-1:]:
            self._summary_key = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._row is not None and self._row["problems"] and "li" in self._stack:
            self._row["problems"][-1] += data
        if self._summary_key is not None:
            self.summary[self._summary_key] += data

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_html_page_header_summary_and_signatures() -> None:
    page = parse(render(sample_report(), "html"))
    text = page.all_text
    assert ("html", {"lang": "vi"}) in page.tags
    assert ("meta", {"charset": "utf-8"}) in page.tags
    assert "BÁO CÁO KIỂM TRA KẾT NỐI ĐIỂM CẦU" in text
    assert "Hội nghị trực tuyến UBND tỉnh tháng 12" in text
    assert "Thời gian bắt đầu dự kiến 08:00 01/12/2026" in text
    assert "Thời gian kiểm tra 17:15:00 – 17:15:42 ngày 27/11/2026" in text
    assert "Người kiểm tra root@cau-truyen-hinh (dòng lệnh)" in text
    assert "Mã lần kiểm tra 20261127T101500-3f9a" in text
    assert "50 gói ping mỗi điểm cầu, cách nhau 100 ms" in text
    assert {key: " ".join(value.split()) for key, value in page.summary.items()} == {
        "ready": "3 Sẵn sàng", "degraded": "3 Suy giảm", "not_ready": "4 Chưa sẵn sàng",
        "parent_down": "2 Mất kết nối cấp trên", "unknown": "1 Chưa rõ",
    }
    assert "13 Tổng số điểm cầu" in text
    assert "Người kiểm tra (Ký, ghi rõ họ tên)" in text
    assert "Lãnh đạo phòng (Ký, ghi rõ họ tên)" in text
    assert ".........., ngày 27 tháng 11 năm 2026" in text
    assert "bị gián đoạn" not in text


def test_html_rows() -> None:
    report = sample_report()
    page = parse(render_html(report))
    assert page.head_cells == [
        "STT", "Điểm cầu", "Cấp trên", "Kết quả", "RTT TB / p95 (ms)", "Jitter (ms)",
        "Mất gói", "MOS", "Lỗi dịch vụ / nguyên nhân", "Cán bộ kỹ thuật"]
    assert len(page.rows) == len(report["sites"])
    assert [row["cells"][0] for row in page.rows] == [str(i) for i in range(1, 14)]
    verdicts = [row["attrs"]["data-verdict"] for row in page.rows]
    assert verdicts == ["not_ready"] * 4 + ["parent_down"] * 2 + ["unknown"] + \
        ["degraded"] * 3 + ["ready"] * 3
    by_site = {row["attrs"]["data-site"]: row for row in page.rows}
    assert set(by_site) == {site["id"] for site in report["sites"]}
    tan_thanh = by_site["20335"]
    assert tan_thanh["cells"][1:9] == [
        "Phường Tân Thạnh 20335 · 127.49.2.10", "Thành phố Tam Kỳ", "Chưa sẵn sàng",
        "22,2 / 24,6", "2,1", "8 %", "3,71", "mất gói 8 % > 5 %"]
    assert tan_thanh["cells"][9] == "Nguyễn Thị Ánh Tuyết 0914 222 333"
    assert tan_thanh["badge"] == "badge v-not_ready"
    assert by_site["20344"]["problems"] == ["độ trễ 182,4 ms > 150 ms"]
    assert by_site["20440"]["cells"][4] == "1.234,5 / 1.236,4"
    assert by_site["20398"]["problems"] == [
        "cấp trên Thành phố Hội An (503) mất kết nối", "không phản hồi 50 gói ping"]
    assert by_site["503"]["cells"][4:8] == ["—", "—", "100 %", "1,00"]
    assert by_site["20437"]["cells"][1] == "Xã Ch'ơm 20437 · 127.49.4.10"
    assert by_site["20437"]["cells"][4:8] == ["—", "—", "—", "—"]
    assert by_site["49"]["cells"][2] == "—"  # the province has no parent
    assert by_site["49"]["cells"][9] == "Trần Thị Thu Hà 0905 123 456 ha.ttt@quangnam.gov.vn"
    assert by_site["20338"]["problems"] == ["kiểm tra sip lỗi: SIP OPTIONS: no answer in 4 s"]


def test_html_numbers_are_vietnamese_style_everywhere() -> None:
    page = parse(render_html(big_report()))
    for row in page.rows:
        for cell in row["cells"][4:8]:
            assert not re.search(r"\d\.\d{1,2}\b", cell), cell  # no decimal point left
    assert "Tổng số điểm cầu" in page.all_text and "260 Tổng số" in page.all_text


def test_html_escapes_everything_from_the_report() -> None:
    report = sample_report(event_title="Họp <b>khẩn</b> & \"đột xuất\"")
    report["sites"][2]["name"] = "<script>alert('xã')</script>"
    report["sites"][2]["reasons_vi"] = ["<img src=x onerror=alert(1)>"]
    report["sites"][2]["contact"] = {"name": "A & B", "phone": "<i>0905</i>", "email": None}
    html = render_html(report)
    assert "<script" not in html and "<img" not in html and "<b>khẩn" not in html
    assert "&lt;script&gt;alert(&#39;xã&#39;)&lt;/script&gt;" in html
    page = parse(html)
    row = next(r for r in page.rows if r["attrs"]["data-site"] == "20335")
    assert row["cells"][1].startswith("<script>alert('xã')</script>")
    assert row["problems"] == ["<img src=x onerror=alert(1)>"]
    assert row["cells"][9] == "A & B <i>0905</i>"
    assert 'Họp <b>khẩn</b> & "đột xuất"' in page.all_text
    assert not any(tag in ("script", "img", "i") for tag, _ in page.tags)


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=40), reason=st.text(max_size=60))
def test_html_and_csv_carry_any_text_unchanged(name: str, reason: str) -> None:
    report = sample_report()
    report["sites"][0]["name"] = name
    report["sites"][0]["reasons_vi"] = [reason] if reason else []
    report["sites"][0]["verdict"] = "not_ready"
    page = parse(render_html(report))
    row = next(r for r in page.rows if r["attrs"]["data-site"] == "49")
    # HTML collapses whitespace: compare what a reader sees.
    def seen(text: str) -> str:
        return " ".join(text.split())
    assert seen(row["cells"][1]).startswith(seen(name))
    if reason.strip() and not re.search(r"\d\.\d", reason):
        assert [seen(p) for p in row["problems"]] == [seen(reason)]
    rows = list(csv.DictReader(io.StringIO(render_csv(report, bom=False), newline="")))
    assert rows[0]["Điểm cầu (site)"] in (name, "'" + name)


def test_html_is_self_contained_and_print_ready() -> None:
    html = render_html(big_report())
    page = parse(html)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "img", "iframe",
                                                       "object", "embed")]
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert key not in attrs, attrs
    css = page.style
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    assert "size: A4 landscape" in css
    assert "display: table-header-group" in css  # header row on every page
    assert re.search(r"table\.sites tr \{ break-inside: avoid; page-break-inside: avoid; \}", css)
    assert "print-color-adjust: exact" in css


def test_html_incomplete_and_empty_runs() -> None:
    page = parse(render_html(incomplete_report()))
    assert "Lần kiểm tra bị gián đoạn" in page.all_text
    assert len(page.rows) == 4 and "4 Tổng số điểm cầu" in page.all_text
    assert "Thời gian kiểm tra từ 17:15:00 27/11/2026" in page.all_text
    empty = sample_report(event=None, event_title=None, event_start=None,
                          summary={"total": 0, "ready": 0, "degraded": 0, "not_ready": 0,
                                   "parent_down": 0, "unknown": 0})
    empty["sites"] = []
    page = parse(render_html(empty))
    assert [row["cells"] for row in page.rows] == [
        ["Không có điểm cầu nào trong lần kiểm tra này."]]
    assert "Thời gian bắt đầu dự kiến" not in page.all_text


def test_html_organization_heading() -> None:
    page = parse(render_html(sample_report(), organization="Sở Khoa học và Công nghệ <QN>"))
    assert "Sở Khoa học và Công nghệ <QN>" in page.all_text


def test_html_does_not_depend_on_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    first = render_html(sample_report())
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("LC_ALL", "C")
    assert render_html(sample_report()) == first


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_html_prints_to_a4_pdf_with_chromium(tmp_path: Path) -> None:
    html_file = tmp_path / "report.html"
    html_file.write_text(render_html(big_report(limit=60)), encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}",
         html_file.as_uri()],
        check=True, capture_output=True, timeout=120, env=env,
    )
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    # A4 landscape is 842 x 595 points.
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert boxes and all(abs(float(w) - 842) < 1 and abs(float(h) - 595) < 1 for w, h in boxes)
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert 2 <= pages <= 8, pages
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                              capture_output=True, text=True).stdout
        assert "BÁO CÁO KIỂM TRA KẾT NỐI ĐIỂM CẦU" in text
        assert text.count("Lỗi dịch vụ / nguyên nhân") == pages  # header on every page


def test_sample_sites_are_inventory_names() -> None:
    """The fixtures use the shipped inventory's real names and parents."""
    import tomllib

    inventory = tomllib.loads((REPO / "config" / "sites.toml").read_text(encoding="utf-8"))
    real = {site["id"]: site for site in inventory["sites"]}
    for site in sample_sites():
        assert real[site["id"]]["name"] == site["name"]
        assert real[site["id"]].get("parent") == site["parent"]
