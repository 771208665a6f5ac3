"""STAMP trains and path MTU checks in test-run reports: every format shows them (table,
CSV, HTML in Vietnamese; JSON as the contract), and docs/testrun.schema.json and
bridgemon.testrun_schema describe their fields."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bridgemon import testrun_schema
from bridgemon.report import render
from bridgemon.report.csvout import COLUMNS, render_csv
from bridgemon.report.html import render_html
from bridgemon.report.table import render_table
from tests.report_samples import REPO, sample_report
from tests.stamp_report_samples import path_report

SCHEMA = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(document)]


def site_of(report: dict[str, Any], site_id: str) -> dict[str, Any]:
    return next(site for site in report["sites"] if site["id"] == site_id)


# --- JSON and the schema -----------------------------------------------------------------


def test_a_report_with_trains_and_mtu_checks_validates() -> None:
    report = path_report()
    assert schema_errors(report) == []
    assert schema_errors(json.loads(render(report, "json"))) == []


def _check(report: dict[str, Any], site_id: str, kind: str) -> dict[str, Any]:
    return next(c for c in site_of(report, site_id)["checks"] if c["type"] == kind)


@pytest.mark.parametrize(("site_id", "kind", "change", "where"), [
    ("502", "stamp", lambda c: c["uplink"].update(loss_ratio=1.5), "uplink/loss_ratio"),
    ("502", "stamp", lambda c: c["uplink"].update(jitter_ms="3"), "uplink/jitter_ms"),
    ("502", "stamp", lambda c: c["downlink"].pop("carried_bps"), "downlink"),
    ("502", "stamp", lambda c: c["round_trip"]["rtt_ms"].pop("p95"), "rtt_ms"),
    ("502", "stamp", lambda c: c.update(state="great"), "state"),
    ("502", "stamp", lambda c: c.update(mos=7), "mos"),
    ("502", "stamp", lambda c: c.pop("rate_bps"), "'rate_bps' is a required"),
    ("502", "stamp", lambda c: c["reasons"][0].update(direction="sideways"), "direction"),
    ("502", "mtu", lambda c: c.update(outcome="maybe"), "outcome"),
    ("502", "mtu", lambda c: c.update(mtu="1400"), "mtu"),
    ("502", "mtu", lambda c: c.pop("size"), "'size' is a required"),
])
def test_the_schema_describes_train_and_mtu_fields(site_id: str, kind: str, change: Any,
                                                   where: str) -> None:
    report = copy.deepcopy(path_report())
    change(_check(report, site_id, kind))
    errors = schema_errors(report)
    assert any(where in error for error in errors), errors


def test_every_typed_check_field_is_in_the_schema() -> None:
    defs = SCHEMA["$defs"]
    described = {*defs["check"]["properties"], *defs["icmp"]["properties"],
                 *defs["stamp"]["properties"], *defs["mtu"]["properties"]}
    assert set(get_type_hints(testrun_schema.CheckReport)) - described == set()
    for name, schema in (("StampDirection", "stamp_direction"),
                         ("StampRoundTrip", "stamp_round_trip"),
                         ("StampReasonReport", "stamp_reason")):
        typed = get_type_hints(getattr(testrun_schema, name))
        assert set(typed) == set(defs[schema]["properties"]), name


def test_the_mtu_checks_echo_time_is_not_the_icmp_rtt_object() -> None:
    check = _check(path_report(), "49", "mtu")
    assert "rtt_ms" not in check and check["echo_rtt_ms"] == 2.1


# --- table -------------------------------------------------------------------------------


def _lines(text: str, start: str) -> list[str]:
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if start in line)
    return lines[index:]


def test_table_shows_each_train_per_direction() -> None:
    text = render_table(path_report())
    trains = _lines(text, "▸ Kiểm tra đường truyền bằng luồng STAMP")
    tam_ky = _lines("\n".join(trains), "Thành phố Tam Kỳ")
    # Downlink clean, uplink 11.7 % lost and 1.76 Mbit/s carried of the 2 Mbit/s sent.
    assert re.search(r"xuống\s+0 %\s+0,0\s+0/0\s+2 Mbit/s\s+10,0/10,0\s+1,05", tam_ky[0])
    assert re.search(r"lên\s+11,7 %\s+0,0\s+0/0\s+1,76 Mbit/s\s+10,0/10,0", tam_ky[1])
    assert "video: 2 Mbit/s," in tam_ky[1] and "Chưa sẵn sàng" in tam_ky[3]
    # A stateless reflector: the round trip only.
    tan_thanh = _lines("\n".join(trains), "Phường Tân Thạnh")
    assert re.search(r"khứ hồi\s+9,8 %", tan_thanh[0])
    assert all(len(line) <= 100 for line in text.splitlines())


def test_table_shows_each_mtu_outcome_in_words() -> None:
    text = render_table(path_report(), width=100)
    mtu = "\n".join(_lines(text, "▸ Kiểm tra MTU đường truyền"))
    assert re.search(r"Thành phố Tam Kỳ\s+1500 B\s+1400\s+cần phân mảnh, MTU đường truyền "
                     r"1400", mtu)
    assert re.search(r"Phường Tân Thạnh\s+1500 B\s+1400\s+hố đen MTU", mtu)
    assert re.search(r"UBND tỉnh Quảng Nam\s+1500 B\s+—\s+đạt: gói 1500 B", mtu)


def test_table_has_no_path_sections_without_path_checks() -> None:
    text = render_table(sample_report())
    assert "STAMP" not in text and "MTU" not in text


def test_table_problems_only_leaves_ready_sites_trains_out() -> None:
    text = render_table(path_report(), problems_only=True)
    trains = "\n".join(_lines(text, "▸ Kiểm tra đường truyền bằng luồng STAMP"))
    assert "UBND tỉnh Quảng Nam" not in trains  # ready
    assert "Thành phố Tam Kỳ" in trains


# --- CSV ---------------------------------------------------------------------------------


def test_csv_has_the_train_and_mtu_columns() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(path_report(), bom=False))))
    assert all(len(row) == len(COLUMNS) for row in rows)
    by_id = {row["Mã (id)"]: row for row in rows}
    tam_ky = by_id["502"]
    assert tam_ky["STAMP luồng (STAMP train)"] == "video: 2 Mbit/s, 1200 B, 1 s"
    assert tam_ky["STAMP kết quả (STAMP state)"] == "not_ready"
    assert tam_ky["STAMP mất gói chiều xuống % (STAMP downlink loss %)"] == "0"
    assert tam_ky["STAMP mất gói chiều lên % (STAMP uplink loss %)"] == "11.71"
    assert tam_ky["STAMP tốc độ đi qua chiều lên bit/s (STAMP uplink carried bit/s)"] \
        == "1763547"
    assert tam_ky["STAMP trễ khứ hồi p95 ms (STAMP delay p95 ms)"] == "10"
    assert tam_ky["STAMP MOS video (STAMP video MOS)"] == "1.05"
    assert tam_ky["MTU kết quả (MTU outcome)"] == "frag_needed"
    assert tam_ky["MTU đường truyền B (path MTU B)"] == "1400"
    assert tam_ky["MTU nguyên nhân (MTU reason)"].startswith(
        "cần phân mảnh, MTU đường truyền 1400")
    stateless = by_id["20335"]
    assert stateless["STAMP mất gói chiều lên % (STAMP uplink loss %)"] == ""
    assert stateless["STAMP mất gói khứ hồi % (STAMP round-trip loss %)"] == "9.8"
    assert stateless["MTU kết quả (MTU outcome)"] == "black_hole"
    unknown = by_id["20341"]  # the budget had no room: the train did not run
    assert unknown["STAMP kết quả (STAMP state)"] == "unknown"
    assert unknown["STAMP MOS video (STAMP video MOS)"] == ""
    plain = [row for row in rows if row["Mã (id)"] not in
             {"49", "502", "20335", "20338", "20341"}]
    assert plain and all(row["STAMP luồng (STAMP train)"] == "" for row in plain)


def test_csv_decimal_comma_reaches_the_train_columns() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(path_report(), decimal=",",
                                                      bom=False))))
    tam_ky = next(row for row in rows if row["Mã (id)"] == "502")
    assert tam_ky["STAMP mất gói chiều lên % (STAMP uplink loss %)"] == "11,71"
    assert tam_ky["STAMP luồng (STAMP train)"] == "video: 2 Mbit/s, 1200 B, 1 s"


# --- HTML --------------------------------------------------------------------------------


def _rows(html: str, table_class: str) -> dict[str, list[str]]:
    """site id -> the texts of its row's cells, in the table of class ``table_class``."""
    start = html.index(f'class="sites path {table_class}"')
    body = html[start:html.index("</table>", start)]
    rows: dict[str, list[str]] = {}
    for match in re.finditer(r'<tr data-site="([^"]+)"[^>]*>(.*?)</tr>', body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", match.group(2), re.S)
        rows[match.group(1)] = [" ".join(re.sub(r"<[^>]+>", " ", cell).split())
                                for cell in cells]
    return rows


def test_html_shows_trains_and_mtu_checks() -> None:
    html = render_html(path_report())
    assert "Kiểm tra đường truyền bằng luồng STAMP" in html
    trains = _rows(html, "trains")
    assert list(trains) == ["20335", "20338", "502", "49", "20341"]  # worst first
    assert trains["502"] == [
        "Thành phố Tam Kỳ 502", "video: 2 Mbit/s, 1200 B, 1 s", "Chưa sẵn sàng",
        "xuống lên", "0 % 11,7 %", "0,0 0,0", "0 / 0 0 / 0", "2 Mbit/s 1,76 Mbit/s",
        "10,0 / 10,0 / 10,0 / 10,0", "1,05",
    ]
    assert trains["20341"][2:] == ["Chưa rõ", "—", "—", "—", "—", "—", "—", "—"]
    mtus = _rows(html, "mtus")
    assert mtus["502"][2:4] == ["1500 B", "1400"]
    assert mtus["502"][4].startswith("cần phân mảnh, MTU đường truyền 1400")
    assert mtus["20335"][4].startswith("hố đen MTU")
    assert mtus["49"][4] == "đạt: gói 1500 B có cờ DF đi qua"


def test_html_has_no_path_sections_without_path_checks() -> None:
    html = render_html(sample_report())
    assert "STAMP" not in html and "sites path" not in html


# --- any train or MTU check the schema allows renders ----------------------------------


def _optional_paths(schema_def: dict[str, Any]) -> list[str]:
    return [key for key in schema_def["properties"] if key not in schema_def.get("required", [])]


@settings(max_examples=25, deadline=2000)
@given(data=st.data())
def test_every_format_renders_any_schema_valid_train_and_mtu_check(data: Any) -> None:
    """A stored run may come from an older or newer bridgemon: optional fields missing or
    null. Whatever the schema accepts, every format renders (no KeyError, no crash)."""
    report = copy.deepcopy(path_report())
    defs = SCHEMA["$defs"]
    for site in report["sites"][:5]:
        for check in site["checks"]:
            kind = check["type"]
            if kind not in ("stamp", "mtu"):
                continue
            for key in _optional_paths(defs[kind]):
                if key in check and data.draw(st.booleans()):
                    del check[key]
            for name in ("downlink", "uplink"):
                stats = check.get(name)
                if isinstance(stats, dict):
                    for key in ("loss_ratio", "jitter_ms", "carried_bps"):
                        if data.draw(st.booleans()):
                            stats[key] = None
            trip = check.get("round_trip")
            if isinstance(trip, dict) and data.draw(st.booleans()):
                trip["rtt_ms"] = None
    assume_valid = schema_errors(report)
    assert assume_valid == [], assume_valid  # the mutations stay within the schema
    for fmt in ("table", "json", "csv", "html"):
        assert render(report, fmt)
