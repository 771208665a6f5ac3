#!/usr/bin/env python3
"""Generate the shipped bridgemon inventories from the GSO administrative-unit lists.

Writes two files (stdlib only, deterministic output):

* ``config/sites.toml``        Quảng Nam as of 2024: province → 18 districts → 241 communes
                               (three levels, 260 sites), demo addresses 127.49.x.y.
* ``examples/danang-2025.toml`` Đà Nẵng from 1 July 2025: city → 94 communes
                               (two levels, 95 sites), demo addresses 127.48.x.y.

All addresses are loopback DEMO addresses; the generated headers say so loudly.

Re-run from the repository root::

    .venv/bin/python scripts/gen_inventory.py
    # or with explicit inputs / output directory:
    .venv/bin/python scripts/gen_inventory.py scripts/data/quangnam-2024.csv \\
        scripts/data/danang-2025.csv --out-dir .
    # CI / review: exit 1 if the files on disk differ from what would be generated
    .venv/bin/python scripts/gen_inventory.py --check

The CSV paths default to ``scripts/data`` (the GSO lists, kept beside this script).
Re-running overwrites both files: once real addresses have been filled in, edit the files by hand
instead (or re-apply your addresses afterwards).
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import sys
import textwrap
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "scripts" / "data"
CSV_COLUMNS = [
    "district_code",
    "district_type",
    "district_name",
    "commune_code",
    "commune_type",
    "commune_name",
]
SCRIPT = "scripts/gen_inventory.py"


@dataclass(frozen=True)
class Row:
    """One line of a GSO administrative-unit CSV."""

    district_code: str
    district_type: str
    district_name: str
    commune_code: str
    commune_type: str
    commune_name: str


@dataclass
class Site:
    """One bridge site (điểm cầu) as written to the inventory."""

    id: str
    name: str
    level: str
    address: str
    unit_type: str
    parent: str | None = None
    extra_comment: list[str] = field(default_factory=list)


@dataclass
class Group:
    """A block of sites preceded by a comment line (one district, or one unit type)."""

    title: str
    sites: list[Site]


# --------------------------------------------------------------------------- input


def read_csv(path: Path) -> list[Row]:
    """Read a GSO CSV, checking its header and that every commune row is complete."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != CSV_COLUMNS:
            raise SystemExit(f"{path}: unexpected header {reader.fieldnames}, want {CSV_COLUMNS}")
        rows = [Row(**{k: (v or "").strip() for k, v in rec.items()}) for rec in reader]
    for n, r in enumerate(rows, start=2):
        if not (r.commune_code.isdigit() and r.commune_type and r.commune_name):
            raise SystemExit(f"{path}:{n}: incomplete commune row {r}")
    return rows


def title_type(unit_type: str) -> str:
    """'thành phố' -> 'Thành phố', 'đặc khu' -> 'Đặc khu' (only the first letter)."""
    return unit_type[:1].upper() + unit_type[1:]


def unit_name(unit_type: str, name: str) -> str:
    return f"{title_type(unit_type)} {name}"


def ip(*octets: int) -> str:
    for o in octets[1:]:
        if not 0 <= o <= 255:
            raise ValueError(f"octet out of range in {octets}")
    if octets[-1] in (0, 255):
        raise ValueError(f"last octet must not be 0 or 255: {octets}")
    return ".".join(str(o) for o in octets)


# --------------------------------------------------------------------------- models


def quangnam_groups(rows: list[Row]) -> tuple[Site, list[Group]]:
    """Province 127.49.0.1; district D → 127.49.(D-500).1; its i-th commune → .(10+i)."""
    root = Site("49", "UBND tỉnh Quảng Nam", "province", ip(127, 49, 0, 1), "tỉnh")
    districts: dict[str, list[Row]] = {}
    for r in rows:
        if not r.district_code.isdigit() or not r.district_type or not r.district_name:
            raise SystemExit(f"Quảng Nam row without a district: {r}")
        districts.setdefault(r.district_code, []).append(r)

    groups: list[Group] = []
    for dcode in sorted(districts, key=int):
        members = sorted(districts[dcode], key=lambda r: int(r.commune_code))
        head = members[0]
        if any(
            (m.district_type, m.district_name) != (head.district_type, head.district_name)
            for m in members
        ):
            raise SystemExit(f"district {dcode} has inconsistent type/name in the CSV")
        third = int(dcode) - 500
        dname = unit_name(head.district_type, head.district_name)
        district = Site(
            dcode,
            dname,
            "district",
            ip(127, 49, third, 1),
            head.district_type.lower(),
            parent=root.id,
        )
        communes = [
            Site(
                m.commune_code,
                unit_name(m.commune_type, m.commune_name),
                "commune",
                ip(127, 49, third, 10 + i),
                m.commune_type.lower(),
                parent=dcode,
            )
            for i, m in enumerate(members)
        ]
        counts = Counter(c.unit_type for c in communes)
        mix = ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        title = f"{dname} (mã/code {dcode}): {mix} — 127.49.{third}.x"
        groups.append(Group(title, [district, *communes]))
    return root, groups


DANANG_TYPE_ORDER = ["phường", "xã", "đặc khu"]


def danang_groups(rows: list[Row]) -> tuple[Site, list[Group]]:
    """City hall 127.48.0.1; communes grouped by type: phường .1.x, xã .2.x, đặc khu .3.x."""
    root = Site("48", "UBND thành phố Đà Nẵng", "province", ip(127, 48, 0, 1), "thành phố")
    by_type: dict[str, list[Row]] = {}
    for r in rows:
        if r.district_code or r.district_name:
            raise SystemExit(f"Đà Nẵng 2025 has no district level, got {r}")
        by_type.setdefault(r.commune_type.lower(), []).append(r)
    unknown = set(by_type) - set(DANANG_TYPE_ORDER)
    if unknown:
        raise SystemExit(f"unexpected commune types in the Đà Nẵng CSV: {sorted(unknown)}")

    groups: list[Group] = []
    for third, utype in enumerate((t for t in DANANG_TYPE_ORDER if t in by_type), start=1):
        members = sorted(by_type[utype], key=lambda r: int(r.commune_code))
        sites = [
            Site(
                m.commune_code,
                unit_name(m.commune_type, m.commune_name),
                "commune",
                ip(127, 48, third, 10 + i),
                utype,
                parent=root.id,
            )
            for i, m in enumerate(members)
        ]
        title = (
            f"{title_type(utype)} — {len(sites)} đơn vị / units, directly under the city"
            f" — 127.48.{third}.x"
        )
        groups.append(Group(title, sites))
    return root, groups


def validate(root: Site, groups: list[Group], levels: list[str]) -> list[Site]:
    """Unique ids and addresses, loopback only, parents exist and sit one level up."""
    sites = [root, *(s for g in groups for s in g.sites)]
    ids = [s.id for s in sites]
    addrs = [s.address for s in sites]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"duplicate site ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    if len(set(addrs)) != len(addrs):
        raise SystemExit(f"duplicate addresses: {sorted({a for a in addrs if addrs.count(a) > 1})}")
    level_of = {s.id: s.level for s in sites}
    for s in sites:
        a = ipaddress.IPv4Address(s.address)
        if not a.is_loopback or s.address.endswith((".0", ".255")):
            raise SystemExit(f"{s.id}: {s.address} is not a usable loopback demo address")
        idx = levels.index(s.level)
        if idx == 0:
            if s.parent is not None:
                raise SystemExit(f"{s.id}: top-level site must not have a parent")
        elif s.parent not in level_of or level_of[s.parent] != levels[idx - 1]:
            raise SystemExit(f"{s.id}: parent {s.parent!r} missing or at the wrong level")
    return sites


# --------------------------------------------------------------------------- output


def q(s: str) -> str:
    """A TOML basic string."""
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in out):
        raise ValueError(f"control character in {s!r}")
    return f'"{out}"'


PROFILE_DEFAULT = """\
# ---------------------------------------------------------------------------
# Hồ sơ đo (profiles) — cách đo và ngưỡng đánh giá. Mọi giá trị đều tùy chọn;
# các số dưới đây chính là giá trị mặc định, ghi ra để dễ đọc và dễ chỉnh.
# Probe profiles: how to probe and when a site counts as good / not ready.
# Every value is optional; the values below ARE the built-in defaults.
# Durations: "200ms", "1.5s", "2m", "1h", or a bare number of seconds.
# See docs/inventory.md.
# ---------------------------------------------------------------------------
[profiles.default]
interval = "30s"              # one probe round per site every 30 s

[profiles.default.icmp]
count = 5                     # echoes per round (a burst)
spacing = "200ms"             # gap between echoes in the burst
timeout = "1s"                # wait for each reply
size = 56                     # ICMP payload bytes (1200 helps catch MTU trouble)

[profiles.default.thresholds]  # ≤ *_good: tốt/good · > *_bad: chưa sẵn sàng/not ready
rtt_good = "150ms"
rtt_bad = "300ms"
jitter_good = "30ms"          # jitter = mean |RTT[i] - RTT[i-1]| (as mtr's Javg)
jitter_bad = "50ms"
loss_good = 0.01              # ratio: 0.01 = 1 %
loss_bad = 0.05

# Điểm cầu cấp tỉnh / the provincial hall (hosts the MCU). Same as default for
# now; tighten it here, e.g. rtt_good = "50ms", without touching the others.
[profiles.province]
interval = "30s"
"""


def wrap(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=86)]


def header(
    title_vi: str, title_en: str, tree_vi: str, tree_en: str, prefix: str, scheme: list[str]
) -> str:
    bar = "# " + "=" * 77
    warn = "# " + "!" * 77
    lines = [
        bar,
        f"# {title_vi}",
        f"# {title_en}",
        bar,
        "#",
        *wrap(f"Danh sách điểm cầu truyền hình trực tuyến: {tree_vi}."),
        *wrap(f"Inventory of videoconference bridge sites (điểm cầu): {tree_en}."),
        "# Mã (id) của mỗi điểm cầu là mã đơn vị hành chính của Tổng cục Thống kê (GSO);",
        "# tên đơn vị ghi đúng như danh mục. Each site id is its GSO administrative code.",
        "#",
        warn,
        f"# !!  CẢNH BÁO: ĐỊA CHỈ CHỈ ĐỂ DEMO — {prefix}.x.y LÀ ĐỊA CHỈ LOOPBACK (127.x.y.z),",
        "# !!  KHÔNG PHẢI ĐỊA CHỈ THẬT CỦA ĐIỂM CẦU. PHẢI THAY `address` CỦA TỪNG ĐIỂM CẦU",
        "# !!  BẰNG ĐỊA CHỈ IP THẬT (thiết bị đầu cuối / codec / MCU) TRƯỚC KHI SỬ DỤNG.",
        "# !!",
        f"# !!  WARNING: DEMO ADDRESSES ONLY — {prefix}.x.y ARE LOOPBACK (127.x.y.z) ADDRESSES",
        "# !!  THAT ONLY REACH THIS MACHINE. REPLACE EVERY SITE'S `address` WITH THE REAL",
        "# !!  ADDRESS OF ITS ENDPOINT BEFORE USE, or every site will look perfectly healthy.",
        warn,
        "#",
        "# Sơ đồ địa chỉ demo / demo address scheme:",
        *(f"#   {s}" for s in scheme),
        "#",
        f"# Tạo tự động bởi / generated by {SCRIPT} from the GSO lists in scripts/data.",
        "# Chạy lại script sẽ GHI ĐÈ tệp này; sau khi đã điền địa chỉ thật, hãy sửa tay.",
        "# Re-running the script OVERWRITES this file; once real addresses are in, edit by hand.",
        "# Kiểm tra / validate:  bridgemon check-config -c <this file>",
        "# Định dạng / format:   docs/inventory.md",
        bar,
        "",
    ]
    return "\n".join(lines)


def monitor_block(listen: str, vantage: str, prefix: str) -> str:
    return f"""\
[monitor]
listen = {q(listen)}     # /metrics, /healthz, /api/v1/sites
interval = "30s"              # probe round interval (default for profiles)
window = 5                    # rounds kept per site for verdicts
# shard = "1/3"               # this daemon's share of 3 (docs/monitoring.md)

# Điểm quan sát (vantage): tên gắn vào mọi chuỗi số liệu, và các "mốc" (anchors) để
# biết chính máy giám sát còn nhìn thấy mạng. Khi mọi mốc im lặng, điểm cầu không trả
# lời bị đánh giá "chưa rõ" (không báo động hàng loạt) — docs/monitoring.md.
# The vantage: the name every series carries, and the anchors that tell whether the
# monitor itself can still see the network. When every anchor is silent, sites that
# fail are judged unknown instead of paging — docs/monitoring.md "Vantage points".
# Mặc định / default: name = the host's short name, no anchors (never isolated).
# DEMO: the anchors below are loopback; put the province's core router and the MCU
# here (addresses that answer whenever this server can see the world).
# [monitor.vantage]
# name = {q(vantage)}
# anchors = ["{prefix}.0.254", "{prefix}.0.253"]
# gateway = false             # true: this host's default gateway is an anchor too
# isolated_share = 0.8        # also cut off when 80 % of sites (and of top sites) fail
"""


def levels_block(levels: list[tuple[str, str, str | None, str]]) -> str:
    out = [
        "# Các cấp, từ trên xuống / levels, top to bottom. A site's parent must be a site of",
        "# the level right above (override with parents = [...]).",
    ]
    for lid, name, profile, comment in levels:
        out += [
            "",
            f"[[levels]]                    # {comment}",
            f"id = {q(lid)}",
            f"name = {q(name)}",
        ]
        if profile:
            out.append(f"profile = {q(profile)}")
    return "\n".join(out) + "\n"


def site_block(s: Site) -> str:
    out = ["[[sites]]", f"id = {q(s.id)}", f"name = {q(s.name)}", f"level = {q(s.level)}"]
    if s.parent is not None:
        out.append(f"parent = {q(s.parent)}")
    out.append(f"address = {q(s.address)}")
    out += s.extra_comment
    out.append(f"labels = {{ gso = {q(s.id)}, unit_type = {q(s.unit_type)} }}")
    return "\n".join(out) + "\n"


ROOT_EXAMPLES = [
    "# Liên hệ kỹ thuật (tùy chọn) / optional technician contact — fill in real ones:",
    '# contact = { name = "Họ và tên kỹ thuật viên", phone = "0xxx xxx xxx" }',
]
ROOT_OVERRIDE = """\
# Ví dụ ghi đè cho riêng một điểm cầu (đặt ngay sau khối [[sites]] của nó); chỉ các
# khóa được ghi mới bị thay, phần còn lại lấy theo profile.
# Example per-site override (right after that site's [[sites]] block); only the keys
# written replace the profile's values:
# [sites.icmp]
# size = 1200                 # large payload: catches MTU / fragmentation trouble
# [sites.thresholds]
# rtt_good = "50ms"
"""


def render(
    head: str,
    listen: str,
    levels: list[tuple[str, str, str | None, str]],
    root: Site,
    groups: Iterable[Group],
    vantage: str,
    prefix: str,
) -> str:
    root.extra_comment = ROOT_EXAMPLES
    parts = [head, monitor_block(listen, vantage, prefix), levels_block(levels), PROFILE_DEFAULT]
    parts.append("# " + "-" * 77 + "\n# Điểm cầu / sites\n# " + "-" * 77 + "\n")
    parts.append(site_block(root) + ROOT_OVERRIDE)
    for g in groups:
        parts.append(f"# ── {g.title} " + "─" * max(3, 70 - len(g.title)) + "\n")
        parts.append("\n".join(site_block(s) for s in g.sites))
    return "\n".join(parts)


def build_quangnam(rows: list[Row]) -> tuple[str, list[Site]]:
    root, groups = quangnam_groups(rows)
    levels = ["province", "district", "commune"]
    sites = validate(root, groups, levels)
    head = header(
        "ĐIỂM CẦU TỈNH QUẢNG NAM — năm 2024 (3 cấp: tỉnh → huyện → xã)",
        "BRIDGE SITES OF QUẢNG NAM PROVINCE — as of 2024 (three levels)",
        f"UBND tỉnh, {len(groups)} đơn vị cấp huyện và "
        f"{len(sites) - 1 - len(groups)} đơn vị cấp xã ({len(sites)} điểm cầu)",
        f"the provincial hall, {len(groups)} district-level and "
        f"{len(sites) - 1 - len(groups)} commune-level units ({len(sites)} sites)",
        "127.49",
        [
            "127.49.0.1           UBND tỉnh (province, GSO 49)",
            "127.49.<D-500>.1     district with GSO code D (502 Tam Kỳ → 127.49.2.1)",
            "127.49.<D-500>.<10+i> its i-th commune (i = 0, 1, … by GSO code)",
        ],
    )
    text = render(
        head,
        "127.0.0.1:9470",
        [
            ("province", "Cấp tỉnh", "province", "tỉnh — provincial hall"),
            ("district", "Cấp huyện", None, "huyện / thị xã / thành phố thuộc tỉnh"),
            ("commune", "Cấp xã", None, "xã / phường / thị trấn"),
        ],
        root,
        groups,
        "Sở TT&TT Quảng Nam",
        "127.49",
    )
    return text, sites


def build_danang(rows: list[Row]) -> tuple[str, list[Site]]:
    root, groups = danang_groups(rows)
    sites = validate(root, groups, ["province", "commune"])
    head = header(
        "ĐIỂM CẦU THÀNH PHỐ ĐÀ NẴNG — từ 01/7/2025 (2 cấp: thành phố → xã)",
        "BRIDGE SITES OF ĐÀ NẴNG CITY — from 1 July 2025 (two levels, no district)",
        f"UBND thành phố và {len(sites) - 1} đơn vị cấp xã trực thuộc "
        f"({len(sites)} điểm cầu; Nghị quyết 1659/NQ-UBTVQH15, Quảng Nam sáp nhập vào Đà Nẵng)",
        f"the city hall and {len(sites) - 1} commune-level units directly under it "
        f"({len(sites)} sites; Quảng Nam merged into Đà Nẵng)",
        "127.48",
        [
            "127.48.0.1           UBND thành phố (city hall, GSO 48)",
            "127.48.1.<10+i>      phường, in GSO-code order",
            "127.48.2.<10+i>      xã",
            "127.48.3.<10+i>      đặc khu",
            "Runs beside config/sites.toml: listens on 127.0.0.1:9471.",
        ],
    )
    text = render(
        head,
        "127.0.0.1:9471",
        [
            ("province", "Cấp tỉnh", "province", "thành phố trực thuộc trung ương"),
            ("commune", "Cấp xã", None, "xã / phường / đặc khu — no district level since 2025"),
        ],
        root,
        groups,
        "Sở TT&TT Đà Nẵng",
        "127.48",
    )
    return text, sites


def self_check(text: str, sites: list[Site], path: Path) -> None:
    """Parse the generated TOML back and compare it with the model."""
    doc = tomllib.loads(text)
    got = [(s["id"], s["name"], s["level"], s.get("parent"), s["address"]) for s in doc["sites"]]
    want = [(s.id, s.name, s.level, s.parent, s.address) for s in sites]
    if got != want:
        raise SystemExit(f"{path}: generated TOML does not round-trip")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("quangnam_csv", nargs="?", type=Path, default=DATA_DIR / "quangnam-2024.csv")
    ap.add_argument("danang_csv", nargs="?", type=Path, default=DATA_DIR / "danang-2025.csv")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=REPO,
        help="repository root to write config/ and examples/ into (default: %(default)s)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the files on disk are out of date",
    )
    args = ap.parse_args(argv)

    outputs = [
        (args.out_dir / "config" / "sites.toml", *build_quangnam(read_csv(args.quangnam_csv))),
        (args.out_dir / "examples" / "danang-2025.toml", *build_danang(read_csv(args.danang_csv))),
    ]
    stale = False
    for path, text, sites in outputs:
        self_check(text, sites, path)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                print(f"out of date: {path}", file=sys.stderr)
                stale = True
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(sites)} sites)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
