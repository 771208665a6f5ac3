"""The CSV report: one row per site, for a department to open in Excel or import.

UTF-8 with a byte-order mark (without it Excel reads Vietnamese as mojibake), comma
separated, CRLF line ends, a bilingual header row ("Điểm cầu (site)"). Rows are in the
report's order (the inventory's), so a sheet can be sorted and filtered as its user
likes. Numbers are plain machine numbers (``12.5``) unless ``decimal=","`` is asked for.
Reads only the report dict. A site's path tests take the last columns: its first STAMP
train (loss, jitter, reordering and duplicates, rate carried per direction; round-trip
delay; video MOS) and its first path MTU check (a site has one of each in practice; the
others are in the JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from typing import Any

from bridgemon import verdicts
from bridgemon.report.common import (
    failing_checks,
    mtu_checks,
    mtu_outcome,
    path_figures,
    train_checks,
    train_delay,
    train_title,
)
from bridgemon.testrun_schema import Contact, Report, RttMs, SiteReport

BOM = "\ufeff"
# (header, how to get the value). The header is what a person reads in row 1.
COLUMNS: tuple[str, ...] = (
    "STT (no)",
    "Mã (id)",
    "Điểm cầu (site)",
    "Cấp (level)",
    "Mã cấp trên (parent id)",
    "Cấp trên (parent)",
    "Địa chỉ (address)",
    "Kết quả (verdict)",
    "Mã kết quả (verdict code)",
    "Gói gửi (sent)",
    "Gói nhận (received)",
    "Mất gói % (loss %)",
    "RTT nhỏ nhất ms (RTT min)",
    "RTT trung bình ms (RTT avg)",
    "RTT lớn nhất ms (RTT max)",
    "RTT p95 ms (RTT p95)",
    "Jitter ms (jitter)",
    "MOS",
    "Kiểm tra dịch vụ lỗi (failing checks)",
    "Nguyên nhân (reasons, vi)",
    "Nguyên nhân (reasons, en)",
    "Cán bộ kỹ thuật (contact)",
    "Điện thoại (phone)",
    "Email",
    "Mã lần kiểm tra (run id)",
    "Thời gian kiểm tra (started at)",
    *(f"{vi} ({en})" for vi, en in (
        ("STAMP luồng", "STAMP train"),
        ("STAMP kết quả", "STAMP state"),
        ("STAMP mất gói chiều xuống %", "STAMP downlink loss %"),
        ("STAMP mất gói chiều lên %", "STAMP uplink loss %"),
        ("STAMP mất gói khứ hồi %", "STAMP round-trip loss %"),
        ("STAMP jitter chiều xuống ms", "STAMP downlink jitter ms"),
        ("STAMP jitter chiều lên ms", "STAMP uplink jitter ms"),
        ("STAMP đảo thứ tự chiều xuống", "STAMP downlink reordered"),
        ("STAMP đảo thứ tự chiều lên", "STAMP uplink reordered"),
        ("STAMP gói trùng chiều xuống", "STAMP downlink duplicates"),
        ("STAMP gói trùng chiều lên", "STAMP uplink duplicates"),
        ("STAMP tốc độ đi qua chiều xuống bit/s", "STAMP downlink carried bit/s"),
        ("STAMP tốc độ đi qua chiều lên bit/s", "STAMP uplink carried bit/s"),
        ("STAMP trễ khứ hồi nhỏ nhất ms", "STAMP delay min ms"),
        ("STAMP trễ khứ hồi trung bình ms", "STAMP delay avg ms"),
        ("STAMP trễ khứ hồi p95 ms", "STAMP delay p95 ms"),
        ("STAMP trễ khứ hồi lớn nhất ms", "STAMP delay max ms"),
        ("STAMP MOS video", "STAMP video MOS"),
        ("MTU gói thử B", "MTU packet tested B"),
        ("MTU kết quả", "MTU outcome"),
        ("MTU đường truyền B", "path MTU B"),
        ("MTU nguyên nhân", "MTU reason"),
    )),
)
# A cell starting with one of these is a formula to Excel and LibreOffice. Reasons can
# carry text from the far end (an HTTP status line, a SIP reason phrase), so text cells
# that would start one get a leading apostrophe (OWASP's "CSV injection" advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render_csv(report: Report, *, decimal: str = ".", bom: bool = True) -> str:
    """The report as CSV text. Write it with ``encoding="utf-8", newline=""``.

    ``decimal=","`` writes ``12,5`` for an Excel set to Vietnamese number format (the
    cell is then quoted; the separator stays a comma). ``bom=False`` for a pipe that
    does not want one.
    """
    if decimal not in (".", ","):
        raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for index, site in enumerate(report.get("sites") or (), start=1):
        writer.writerow(_row(report, site, index, decimal))
    return (BOM if bom else "") + out.getvalue()


def _row(report: Report, site: SiteReport, index: int, decimal: str) -> list[str]:
    def number(value: float | int | None, digits: int) -> str:
        if value is None:
            return ""
        text = f"{round(float(value), digits):.{digits}f}".rstrip("0").rstrip(".")
        return text.replace(".", ",") if decimal == "," else text

    def count(value: Any) -> str:
        return "" if value is None else str(int(value))

    fig = path_figures(site)
    loss = fig["loss_ratio"]
    contact: Contact | dict[str, None] = site.get("contact") or {}
    verdict = str(site.get("verdict", ""))
    failing = "; ".join(
        f"{c.get('name') or c.get('type')}: {c.get('reason') or 'failed'}"
        for c in failing_checks(site)
    )
    return [
        str(index),
        _text(site.get("id")),
        _text(site.get("name")),
        _text(site.get("level")),
        _text(site.get("parent")),
        _text(site.get("parent_name")),
        _text(site.get("address")),
        _text(verdicts.words_vi(verdict)),
        _text(verdict),
        count(fig["sent"]),
        count(fig["received"]),
        number(None if loss is None else float(loss) * 100, 2),
        number(fig["rtt_min"], 3),
        number(fig["rtt_avg"], 3),
        number(fig["rtt_max"], 3),
        number(fig["rtt_p95"], 3),
        number(fig["jitter"], 3),
        number(site.get("mos"), 2),
        _text(failing),
        _text("; ".join(site.get("reasons_vi") or ())),
        _text("; ".join(site.get("reasons") or ())),
        _text(contact.get("name")),
        _text(contact.get("phone")),
        _text(contact.get("email")),
        _text(report.get("run_id")),
        _text(report.get("started_at")),
        *_path_cells(site, number, count),
    ]


def _path_cells(site: SiteReport, number: Callable[[float | int | None, int], str],
                count: Callable[[Any], str]) -> list[str]:
    trains, mtus = train_checks(site), mtu_checks(site)
    cells: list[str] = []
    if trains:
        check = trains[0]
        down: Mapping[str, Any] = check.get("downlink") or {}
        up: Mapping[str, Any] = check.get("uplink") or {}
        trip: Mapping[str, Any] = check.get("round_trip") or {}
        delay: RttMs | dict[str, None] = train_delay(check) or {}

        def loss(stats: Mapping[str, Any]) -> str:
            ratio = stats.get("loss_ratio")
            return number(None if ratio is None else float(ratio) * 100, 2)

        cells += [
            _text(train_title(check, decimal=".")),
            _text(check.get("state")),
            loss(down), loss(up), loss(trip),
            number(down.get("jitter_ms"), 3), number(up.get("jitter_ms"), 3),
            count(down.get("reordered")), count(up.get("reordered")),
            count(down.get("duplicates")), count(up.get("duplicates")),
            count(down.get("carried_bps")), count(up.get("carried_bps")),
            number(delay.get("min"), 3), number(delay.get("avg"), 3),
            number(delay.get("p95"), 3), number(delay.get("max"), 3),
            number(check.get("mos"), 2),
        ]
    else:
        cells += [""] * 18
    if mtus:
        check = mtus[0]
        cells += [
            count(check.get("packet_size")),
            _text(check.get("outcome") or check.get("state")),
            count(check.get("mtu")),
            _text(mtu_outcome(check)),
        ]
    else:
        cells += [""] * 4
    return cells


def _text(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
