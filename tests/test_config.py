"""The inventory file: loading, resolving profiles and levels, and reporting every error
as PATH:LINE: field: message."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import Path

import pytest

from bridgemon.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    ConfigIssue,
    config_path,
    load_config,
)
from bridgemon.specs import IcmpSpec, Thresholds

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "sites.toml"
DANANG = REPO / "examples" / "danang-2025.toml"

ISSUE_LINE = re.compile(r"^(?P<path>.+):(?P<line>\d+): (?:(?P<field>[\w.\[\]]+): )?(?P<msg>.+)$")

# A small, valid three-level tree of Quảng Nam sites; tests append to it or alter it.
TREE = """\
[[sites]]
id = "49"
name = "UBND tỉnh Quảng Nam"
level = "province"
address = "127.49.0.1"

[[sites]]
id = "516"
name = "Huyện Nam Trà My"
level = "district"
parent = "49"
address = "127.49.16.1"

[[sites]]
id = "20800"
name = "Xã Trà Leng"
level = "commune"
parent = "516"
address = "127.49.16.10"

[[sites]]
id = "507"
name = "Thị xã Điện Bàn"
level = "district"
parent = "49"
address = "127.49.7.1"

[[sites]]
id = "20500"
name = "Phường Vĩnh Điện"
level = "commune"
parent = "507"
address = "127.49.7.10"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def errors(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines == [str(issue) for issue in info.value.issues]
    return path, lines


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based number of the nth line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) > nth, (needle, hits)
    return hits[nth]


def key_line(text: str, key: str, value: str, nth: int = 0) -> int:
    """The line of the nth ``key = "value"``."""
    return line_of(text, f'{key} = "{value}"', nth)


def site(
    site_id: str, name: str, level: str, address: str, parent: str | None = None, extra: str = ""
) -> str:
    out = f'\n[[sites]]\nid = "{site_id}"\nname = "{name}"\nlevel = "{level}"\n'
    if parent is not None:
        out += f'parent = "{parent}"\n'
    out += f'address = "{address}"\n'
    return out + extra


# --------------------------------------------------------------------------- shipped files


def test_shipped_inventory_loads() -> None:
    config = load_config(SHIPPED)
    inventory = config.inventory
    assert len(inventory) == 260
    assert [level.id for level in inventory.levels] == ["province", "district", "commune"]
    counts = Counter(site.level for site in inventory.sites.values())
    assert counts == {"province": 1, "district": 18, "commune": 241}
    assert config.warnings == ()
    assert config.monitor.listen == ("127.0.0.1", 9470)
    assert config.monitor.interval == 30.0
    assert config.monitor.window == 5


def test_shipped_inventory_names_and_tree() -> None:
    inventory = load_config(SHIPPED).inventory
    by_name = {site.name: site for site in inventory.sites.values()}
    province = inventory.sites["49"]
    assert province.name == "UBND tỉnh Quảng Nam"
    assert province.parent is None
    assert province.profile == "province"
    for name in ("Huyện Nam Trà My", "Thị xã Điện Bàn", "Thành phố Tam Kỳ", "Huyện Đại Lộc"):
        assert by_name[name].level == "district"
        assert by_name[name].parent == "49"
    assert by_name["Phường Tân Thạnh"].parent == "502"
    for site in inventory.sites.values():
        if site.level == "commune":
            assert site.parent is not None
            assert inventory.sites[site.parent].level == "district"
    assert inventory.roots == ("49",)
    assert sum(1 for _ in inventory.walk()) == 260


def test_shipped_addresses_are_loopback_and_unique() -> None:
    for path in (SHIPPED, DANANG):
        sites = load_config(path).inventory.sites.values()
        addresses = [site.address for site in sites]
        assert len(set(addresses)) == len(addresses)
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses)


def test_danang_2025_two_levels() -> None:
    config = load_config(DANANG)
    inventory = config.inventory
    assert len(inventory) == 95
    assert [level.id for level in inventory.levels] == ["province", "commune"]
    counts = Counter(site.level for site in inventory.sites.values())
    assert counts == {"province": 1, "commune": 94}
    communes = [site for site in inventory.sites.values() if site.level == "commune"]
    assert all(site.parent == "48" for site in communes)
    assert inventory.sites["48"].parent is None
    assert inventory.sites["20333"].name == "Đặc khu Hoàng Sa"
    assert config.monitor.listen == ("127.0.0.1", 9471)
    assert max(depth for _, depth in inventory.walk()) == 1


# --------------------------------------------------------------------------- valid files


def test_minimal_tree_with_default_levels(tmp_path: Path) -> None:
    config = load(tmp_path, TREE)
    inventory = config.inventory
    assert [(level.id, level.name) for level in inventory.levels] == [
        ("province", "Cấp tỉnh"),
        ("district", "Cấp huyện"),
        ("commune", "Cấp xã"),
    ]
    assert inventory.level("commune").parents == ("district",)
    assert inventory.level("province").parents == ()
    assert inventory.sites["516"].name == "Huyện Nam Trà My"
    assert inventory.sites["20800"].parent == "516"
    assert config.monitor.listen == ("127.0.0.1", 9470)
    assert config.path == tmp_path / "sites.toml"


def test_site_records_its_header_line(tmp_path: Path) -> None:
    inventory = load(tmp_path, TREE).inventory
    assert inventory.sites["49"].line == 1
    assert inventory.sites["516"].line == line_of(TREE, 'id = "516"') - 1


def test_contact_and_labels(tmp_path: Path) -> None:
    text = site(
        "49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1",
        extra='contact = { name = "Nguyễn Văn An", phone = "0235 3812 345" }\n'
              'labels = { gso = "49", unit_type = "tỉnh" }\n',
    )
    province = load(tmp_path, text).inventory.sites["49"]
    assert province.contact is not None
    assert province.contact.name == "Nguyễn Văn An"
    assert province.contact.phone == "0235 3812 345"
    assert province.contact.email is None
    assert province.labels == {"gso": "49", "unit_type": "tỉnh"}


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" 10.49.0.10 ", "10.49.0.10"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("::1", "::1"),
        ("vtc.quangnam.gov.vn", "vtc.quangnam.gov.vn"),
        ("mcu-1", "mcu-1"),
    ],
)
def test_good_addresses(tmp_path: Path, written: str, stored: str) -> None:
    text = site("49", "UBND tỉnh Quảng Nam", "province", written)
    assert load(tmp_path, text).inventory.sites["49"].address == stored


def test_duplicate_address_is_a_warning_not_an_error(tmp_path: Path) -> None:
    text = TREE.replace('address = "127.49.7.10"', 'address = "127.49.16.10"')
    path = write(tmp_path, text)
    config = load_config(path)
    assert len(config.inventory) == 5
    assert [str(w) for w in config.warnings] == [
        f"{path}:{line_of(text, '127.49.16.10', 1)}: sites[4].address: address 127.49.16.10 "
        f"is also used by the site at line {line_of(text, '127.49.16.10')}"
    ]


def test_monitor_settings(tmp_path: Path) -> None:
    text = '[monitor]\nlisten = "127.0.0.2:9100"\ninterval = "1m"\nwindow = 12\n' + TREE
    monitor = load(tmp_path, text).monitor
    assert monitor.listen == ("127.0.0.2", 9100)
    assert monitor.interval == 60.0
    assert monitor.window == 12


def test_config_path_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BRIDGEMON_CONFIG", raising=False)
    assert config_path(None) == DEFAULT_CONFIG == Path("config/sites.toml")
    monkeypatch.setenv("BRIDGEMON_CONFIG", str(tmp_path / "env.toml"))
    assert config_path(None) == tmp_path / "env.toml"
    assert config_path(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"


# --------------------------------------------------------------------------- profiles


def test_built_in_defaults_without_profiles(tmp_path: Path) -> None:
    text = '[monitor]\ninterval = "45s"\n' + TREE
    commune = load(tmp_path, text).inventory.sites["20800"]
    assert commune.profile == "default"
    assert commune.interval == 45.0  # the monitor interval is every profile's default
    assert commune.icmp == IcmpSpec(count=5, spacing=0.2, timeout=1.0, size=56)
    assert commune.thresholds == Thresholds(
        rtt_good=0.150, rtt_bad=0.300, jitter_good=0.030, jitter_bad=0.050,
        loss_good=0.01, loss_bad=0.05,
    )


def test_profile_overrides_only_written_keys(tmp_path: Path) -> None:
    text = """\
[profiles.vungcao]
interval = "1m"
[profiles.vungcao.icmp]
count = 10
[profiles.vungcao.thresholds]
rtt_good = "200ms"
loss_bad = 0.1
""" + TREE.replace('address = "127.49.16.10"', 'address = "127.49.16.10"\nprofile = "vungcao"')
    inventory = load(tmp_path, text).inventory
    commune = inventory.sites["20800"]
    assert commune.profile == "vungcao"
    assert commune.interval == 60.0
    assert commune.icmp == IcmpSpec(count=10, spacing=0.2, timeout=1.0, size=56)
    assert commune.thresholds == Thresholds(rtt_good=0.2, loss_bad=0.1)
    assert commune.thresholds.rtt_bad == 0.3  # unwritten: built-in default
    # a sibling without the profile keeps the defaults
    other = inventory.sites["20500"]
    assert other.profile == "default"
    assert other.icmp == IcmpSpec()
    assert other.thresholds == Thresholds()
    assert other.interval == 30.0


def test_site_override_on_top_of_profile(tmp_path: Path) -> None:
    text = """\
[profiles.tinh]
[profiles.tinh.icmp]
count = 8
spacing = "100ms"
[profiles.tinh.thresholds]
rtt_good = "100ms"
rtt_bad = "250ms"
""" + site(
        "49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1",
        extra='profile = "tinh"\n[sites.icmp]\nsize = 1200\n'
        '[sites.thresholds]\nrtt_good = "50ms"\n',
    )
    province = load(tmp_path, text).inventory.sites["49"]
    assert province.icmp == IcmpSpec(count=8, spacing=0.1, timeout=1.0, size=1200)
    assert province.thresholds == Thresholds(rtt_good=0.05, rtt_bad=0.25)


def test_site_override_without_profile(tmp_path: Path) -> None:
    text = site(
        "49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1",
        extra="icmp.timeout = 2\nthresholds.loss_good = 0\n",
    )
    province = load(tmp_path, text).inventory.sites["49"]
    assert province.icmp == IcmpSpec(timeout=2.0)
    assert province.thresholds == Thresholds(loss_good=0.0)


def test_level_profile_and_site_profile_precedence(tmp_path: Path) -> None:
    text = """\
[[levels]]
id = "province"
name = "Cấp tỉnh"
profile = "tinh"
[[levels]]
id = "district"
name = "Cấp huyện"
[[levels]]
id = "commune"
name = "Cấp xã"
profile = "xa"

[profiles.tinh.icmp]
size = 1200
[profiles.xa.icmp]
count = 3
[profiles.rieng.icmp]
count = 7
""" + TREE.replace('address = "127.49.7.10"', 'address = "127.49.7.10"\nprofile = "rieng"')
    sites = load(tmp_path, text).inventory.sites
    assert sites["49"].profile == "tinh"
    assert sites["49"].icmp.size == 1200
    assert sites["516"].profile == "default"
    assert sites["516"].icmp == IcmpSpec()
    assert sites["20800"].profile == "xa"
    assert sites["20800"].icmp.count == 3
    assert sites["20500"].profile == "rieng"  # the site's own profile beats its level's
    assert sites["20500"].icmp.count == 7


def test_written_default_profile_applies(tmp_path: Path) -> None:
    text = '[profiles.default]\ninterval = "10s"\n[profiles.default.icmp]\ncount = 3\n' + TREE
    commune = load(tmp_path, text).inventory.sites["20800"]
    assert commune.interval == 10.0
    assert commune.icmp == IcmpSpec(count=3)


def test_durations_as_numbers(tmp_path: Path) -> None:
    text = "[profiles.default]\ninterval = 20\n[profiles.default.thresholds]\nrtt_good = 0.1\n"
    commune = load(tmp_path, text + TREE).inventory.sites["20800"]
    assert commune.interval == 20.0
    assert commune.thresholds.rtt_good == 0.1


# --------------------------------------------------------------------------- levels


def test_two_level_tree(tmp_path: Path) -> None:
    text = """\
[[levels]]
id = "province"
name = "Cấp tỉnh"
[[levels]]
id = "commune"
name = "Cấp xã"
""" + site("48", "UBND thành phố Đà Nẵng", "province", "127.48.0.1") + site(
        "20194", "Phường Hải Châu", "commune", "127.48.1.10", parent="48"
    ) + site("20333", "Đặc khu Hoàng Sa", "commune", "127.48.3.10", parent="48")
    inventory = load(tmp_path, text).inventory
    assert [level.id for level in inventory.levels] == ["province", "commune"]
    assert inventory.level("commune").parents == ("province",)
    assert [(s.id, d) for s, d in inventory.walk()] == [("48", 0), ("20194", 1), ("20333", 1)]


def test_two_level_tree_commune_needs_the_province(tmp_path: Path) -> None:
    text = '[[levels]]\nid = "province"\n[[levels]]\nid = "commune"\n' + site(
        "48", "UBND thành phố Đà Nẵng", "province", "127.48.0.1"
    ) + site("20194", "Phường Hải Châu", "commune", "127.48.1.10")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, '[[sites]]', 1)}: sites[1].parent: "
        "a commune site needs a parent (province)"
    ]


def test_four_level_tree(tmp_path: Path) -> None:
    text = """\
[[levels]]
id = "province"
name = "Cấp tỉnh"
[[levels]]
id = "district"
name = "Cấp huyện"
[[levels]]
id = "commune"
name = "Cấp xã"
[[levels]]
id = "village"
name = "Thôn"
""" + TREE + site(
        "20800-t1", "Thôn 1, xã Trà Leng", "village", "127.49.16.100", parent="20800"
    ) + site("20800-t2", "Thôn 2, xã Trà Leng", "village", "127.49.16.101", parent="20800")
    inventory = load(tmp_path, text).inventory
    assert inventory.level("village").parents == ("commune",)
    walk = [(s.id, d) for s, d in inventory.walk()]
    assert walk == [
        ("49", 0), ("516", 1), ("20800", 2), ("20800-t1", 3), ("20800-t2", 3),
        ("507", 1), ("20500", 2),
    ]
    assert [s.id for s in inventory.ancestors("20800-t2")] == ["20800", "516", "49"]


def test_four_level_tree_rejects_skipping_a_level(tmp_path: Path) -> None:
    text = (
        '[[levels]]\nid = "province"\n[[levels]]\nid = "district"\n'
        '[[levels]]\nid = "commune"\n[[levels]]\nid = "village"\n'
        + TREE
        + site("t1", "Thôn 1", "village", "127.49.16.100", parent="516")
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', '516', 1)}: sites[5].parent: parent '516' is a "
        "district site; a village site's parent must be a commune site"
    ]


def test_level_with_several_parent_levels(tmp_path: Path) -> None:
    text = """\
[[levels]]
id = "province"
[[levels]]
id = "district"
[[levels]]
id = "commune"
parents = ["district", "province"]
""" + TREE + site("20999", "Xã Tân Hiệp (đảo Cù Lao Chàm)", "commune", "127.49.0.20", parent="49")
    inventory = load(tmp_path, text).inventory
    assert inventory.level("commune").parents == ("district", "province")
    assert inventory.sites["20999"].parent == "49"
    assert "20999" in inventory.children["49"]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:0: no such file"


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = TREE + '\n[[sites]]\nid = "20801"\nname = "Xã Trà Mai\nlevel = "commune"\n'
    path, lines = errors(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:{line_of(text, 'Xã Trà Mai')}: TOML syntax: ")
    assert "(at line" not in lines[0]  # the position moved into PATH:LINE


def test_toml_syntax_error_missing_value(tmp_path: Path) -> None:
    path, lines = errors(tmp_path, '[monitor]\ninterval =\n')
    assert len(lines) == 1
    assert re.fullmatch(rf"{re.escape(str(path))}:2: TOML syntax: \S.*", lines[0])


def test_toml_syntax_error_at_end_of_document_names_the_last_line(tmp_path: Path) -> None:
    text = TREE + '\n[[sites]]\nid = "20801"\nname = "Xã Trà Mai'  # no closing quote, no newline
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:{len(text.splitlines())}: TOML syntax: Unterminated string"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = 'sties = []\n' + TREE
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:1: sties: unknown key (check the spelling; see docs/inventory.md)"
    ]


def test_unknown_key_in_monitor(tmp_path: Path) -> None:
    text = '[monitor]\ninterval = "30s"\nintervall = "1m"\n' + TREE
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:3: monitor.intervall: unknown key (check the spelling; see docs/inventory.md)"
    ]


def test_unknown_key_in_site(tmp_path: Path) -> None:
    text = TREE.replace('parent = "516"', 'parent = "516"\nphone = "0235 3812 345"')
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, 'phone =')}: sites[2].phone: "
        "unknown key (check the spelling; see docs/inventory.md)"
    ]


def test_misspelled_required_key_in_site(tmp_path: Path) -> None:
    text = TREE.replace('address = "127.49.7.1"', 'adress = "127.49.7.1"')
    path, lines = errors(tmp_path, text)
    header = line_of(text, 'id = "507"') - 1
    assert lines == [
        f"{path}:{header}: sites[3].address: required key is missing",
        f"{path}:{line_of(text, 'adress')}: sites[3].adress: "
        "unknown key (check the spelling; see docs/inventory.md)",
    ]


def test_unknown_key_in_site_icmp(tmp_path: Path) -> None:
    text = TREE.replace(
        'address = "127.49.16.10"', 'address = "127.49.16.10"\n[sites.icmp]\ncount = 3\nsise = 1200'
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, 'sise')}: sites[2].icmp.sise: "
        "unknown key (check the spelling; see docs/inventory.md)"
    ]


def test_unknown_key_in_site_thresholds_and_profile(tmp_path: Path) -> None:
    text = '[profiles.xa.icmp]\ncounts = 3\n' + TREE.replace(
        'address = "127.49.16.10"',
        'address = "127.49.16.10"\n[sites.thresholds]\nrtt_warn = "100ms"',
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:2: profiles.xa.icmp.counts: "
        "unknown key (check the spelling; see docs/inventory.md)",
        f"{path}:{line_of(text, 'rtt_warn')}: sites[2].thresholds.rtt_warn: "
        "unknown key (check the spelling; see docs/inventory.md)",
    ]


def test_sites_must_be_an_array_of_tables(tmp_path: Path) -> None:
    path, lines = errors(tmp_path, '[sites]\nid = "49"\n')
    assert lines == [
        f"{path}:1: sites: sites must be an array of tables: write each site under [[sites]]"
    ]


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    text = TREE + site("516", "Huyện Bắc Trà My", "district", "127.49.15.1", parent="49")
    path, lines = errors(tmp_path, text)
    first = line_of(text, 'id = "516"')
    second = line_of(text, 'id = "516"', 1)
    assert lines == [
        f"{path}:{second}: sites[5].id: duplicate site id '516' (first at line {first})"
    ]


def test_missing_parent(tmp_path: Path) -> None:
    text = TREE + site("20801", "Xã Trà Mai", "commune", "127.49.16.11")
    path, lines = errors(tmp_path, text)
    header = line_of(text, 'id = "20801"') - 1
    assert lines == [f"{path}:{header}: sites[5].parent: a commune site needs a parent (district)"]


def test_top_level_site_with_a_parent(tmp_path: Path) -> None:
    text = TREE + site("48", "UBND thành phố Đà Nẵng", "province", "127.48.0.1", parent="49")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', '49', 2)}: sites[5].parent: "
        "a province site is at the top; it has no parent"
    ]


def test_parent_at_the_wrong_level(tmp_path: Path) -> None:
    text = TREE + site("20801", "Xã Trà Mai", "commune", "127.49.16.11", parent="49")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', '49', 2)}: sites[5].parent: parent '49' is a "
        "province site; a commune site's parent must be a district site"
    ]


def test_unknown_parent(tmp_path: Path) -> None:
    text = TREE + site("20801", "Xã Trà Mai", "commune", "127.49.16.11", parent="517")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', '517')}: sites[5].parent: unknown parent site '517'"
    ]


def test_parent_that_is_itself_broken_is_not_called_unknown(tmp_path: Path) -> None:
    # 516 exists but has a bad address: its own error is enough, its children stay quiet.
    text = TREE.replace('address = "127.49.16.1"', 'address = "127.49.16.999"')
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, '127.49.16.999')}: sites[1].address: bad address "
        "'127.49.16.999': give an IPv4/IPv6 address or a host name"
    ]


CYCLIC_LEVELS = """\
[[levels]]
id = "province"
[[levels]]
id = "cluster"
name = "Cụm"
parents = ["province", "hub"]
[[levels]]
id = "hub"
name = "Trạm trung chuyển"
parents = ["cluster"]
"""


def test_cyclic_parents(tmp_path: Path) -> None:
    text = (
        CYCLIC_LEVELS
        + site("49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1")
        + site("cum-bac", "Cụm phía Bắc", "cluster", "127.49.1.1", parent="tram-a")
        + site("tram-a", "Trạm Điện Bàn", "hub", "127.49.1.2", parent="cum-bac")
        + site("tram-b", "Trạm Hội An", "hub", "127.49.1.3", parent="cum-bac")
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', 'tram-a')}: sites[1].parent: "
        "parent cycle: cum-bac -> tram-a -> cum-bac"
    ]


def test_cycle_is_reported_once_even_when_reached_from_outside(tmp_path: Path) -> None:
    text = (
        CYCLIC_LEVELS
        + site("tram-b", "Trạm Hội An", "hub", "127.49.1.3", parent="cum-bac")
        + site("cum-bac", "Cụm phía Bắc", "cluster", "127.49.1.1", parent="tram-a")
        + site("tram-a", "Trạm Điện Bàn", "hub", "127.49.1.2", parent="cum-bac")
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', 'tram-a')}: sites[1].parent: "
        "parent cycle: cum-bac -> tram-a -> cum-bac"
    ]


def test_own_parent_is_reported_once(tmp_path: Path) -> None:
    text = TREE + site("20801", "Xã Trà Mai", "commune", "127.49.16.11", parent="20801")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'parent', '20801')}: sites[5].parent: "
        "a site cannot be its own parent"
    ]


def test_level_errors(tmp_path: Path) -> None:
    text = """\
[[levels]]
id = "province"
[[levels]]
id = "commune"
parents = ["district"]
[[levels]]
id = "thon"
parents = ["thon"]
profile = "vungcao"
[[levels]]
id = "commune"
"""
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:5: levels[1].parents: unknown level 'district'",
        f"{path}:8: levels[2].parents: a level cannot be its own parent level",
        f"{path}:9: levels[2].profile: unknown profile 'vungcao'",
        f"{path}:11: levels[3].id: duplicate level 'commune'",
    ]


def test_problems_on_one_line_keep_the_order_they_were_found(tmp_path: Path) -> None:
    # ConfigError used to order a line's problems through a set(), that is by string
    # hashes, which Python salts per process: check-config shuffled them from run to run.
    text = """\
[[levels]]
id = "commune"
parents = ["commune", "district", "nope", "ward", "x", "y"]
"""
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:3: levels[0].parents: a level cannot be its own parent level"] + [
        f"{path}:3: levels[0].parents: unknown level {name!r}"
        for name in ("district", "nope", "ward", "x", "y")
    ]


def test_config_error_sorts_by_line_and_says_each_problem_once() -> None:
    found = [ConfigIssue("f.toml", 9, "a", f"problem {n}") for n in range(6)]
    first = ConfigIssue("f.toml", 2, "b", "first")
    error = ConfigError([*found, first, found[3], found[0], first])
    assert error.issues == [first, *found]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("300.1.1.1", "give an IPv4/IPv6 address or a host name"),
        ("1.2.3.999", "give an IPv4/IPv6 address or a host name"),
        ("1.2.3", "give an IPv4/IPv6 address or a host name"),
        ("bad host!", "give an IPv4/IPv6 address or a host name"),
        ("điểm-cầu.vn", "give an IPv4/IPv6 address or a host name"),
        ("-mcu.example", "give an IPv4/IPv6 address or a host name"),
        ("", "give an IPv4/IPv6 address or a host name"),
        ("0.0.0.0", "unspecified or multicast address"),
        ("::", "unspecified or multicast address"),
        ("224.0.0.1", "unspecified or multicast address"),
    ],
)
def test_bad_addresses(tmp_path: Path, address: str, why: str) -> None:
    text = TREE.replace('address = "127.49.16.10"', f'address = "{address}"')
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'address', address)}: sites[2].address: "
        f"bad address {address!r}: {why}"
    ]


@pytest.mark.parametrize(
    ("toml", "field", "message"),
    [
        ('[monitor]\ninterval = "3 parsecs"\n', "monitor.interval", "bad duration '3 parsecs'"),
        ("[monitor]\ninterval = true\n", "monitor.interval", "not a boolean"),
        ('[profiles.xa]\ninterval = "inf"\n', "profiles.xa.interval", "finite, non-negative"),
        ('[profiles.xa.icmp]\nspacing = "-200ms"\n', "profiles.xa.icmp.spacing", "bad duration"),
        (
            '[profiles.xa.thresholds]\nrtt_good = ""\n',
            "profiles.xa.thresholds.rtt_good",
            "empty duration",
        ),
    ],
)
def test_bad_durations(tmp_path: Path, toml: str, field: str, message: str) -> None:
    text = toml + TREE
    path, lines = errors(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:2: {field}: ")
    assert message in lines[0]


def test_bad_duration_in_a_site_override(tmp_path: Path) -> None:
    text = TREE.replace(
        'address = "127.49.16.10"', 'address = "127.49.16.10"\n[sites.icmp]\ntimeout = "1 giây"'
    )
    path, lines = errors(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(
        f"{path}:{line_of(text, '1 giây')}: sites[2].icmp.timeout: bad duration '1 giây': "
    )


def test_out_of_range_values(tmp_path: Path) -> None:
    text = '[monitor]\nwindow = 0\n[profiles.xa.icmp]\ncount = 0\n' + TREE
    path, lines = errors(tmp_path, text)
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:2", "monitor.window"],
        [f"{path}:4", "profiles.xa.icmp.count"],
    ]
    assert all("greater than or equal to 1" in line for line in lines)


def test_burst_longer_than_interval_in_a_profile(tmp_path: Path) -> None:
    text = '[profiles.xa]\ninterval = "2s"\n[profiles.xa.icmp]\ncount = 10\n' + TREE
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:3: profiles.xa.icmp: a burst of 10 echoes 200ms apart with a 1s timeout "
        "lasts 2.8s, not shorter than the 2s interval"
    ]


def test_burst_exactly_as_long_as_the_interval_is_rejected(tmp_path: Path) -> None:
    # 4 x 250ms + 1s = 2s: the next round would start before this burst ends
    text = '[profiles.xa]\ninterval = "2s"\n[profiles.xa.icmp]\ncount = 5\nspacing = "250ms"\n'
    path, lines = errors(tmp_path, text + TREE)
    assert lines == [
        f"{path}:3: profiles.xa.icmp: a burst of 5 echoes 250ms apart with a 1s timeout "
        "lasts 2s, not shorter than the 2s interval"
    ]


def test_burst_shorter_than_interval_is_fine(tmp_path: Path) -> None:
    text = '[profiles.xa]\ninterval = "3s"\n[profiles.xa.icmp]\ncount = 5\nspacing = "250ms"\n'
    load(tmp_path, text + TREE)


def test_burst_too_long_from_a_site_override(tmp_path: Path) -> None:
    text = '[monitor]\ninterval = "5s"\n' + TREE.replace(
        'address = "127.49.16.10"', 'address = "127.49.16.10"\nicmp.count = 30'
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, 'icmp.count')}: sites[2].icmp: a burst of 30 echoes 200ms apart "
        "with a 1s timeout lasts 6.8s, not shorter than the 5s interval"
    ]


@pytest.mark.parametrize(
    ("keys", "metric", "good", "bad"),
    [
        ('rtt_good = "400ms"', "rtt", "0.4", "0.3"),
        ('jitter_good = "40ms"\njitter_bad = "35ms"', "jitter", "0.04", "0.035"),
        ("loss_good = 0.2", "loss", "0.2", "0.05"),
    ],
)
def test_thresholds_good_worse_than_bad(
    tmp_path: Path, keys: str, metric: str, good: str, bad: str
) -> None:
    text = f"[profiles.xa.thresholds]\n{keys}\n" + TREE
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, f'{metric}_good')}: profiles.xa.thresholds.{metric}_good: "
        f"{metric}_good ({good}) is worse than {metric}_bad ({bad})"
    ]


def test_thresholds_good_equal_to_bad_is_fine(tmp_path: Path) -> None:
    text = '[profiles.default.thresholds]\nrtt_good = "300ms"\nloss_good = 0.05\n' + TREE
    thresholds = load(tmp_path, text).inventory.sites["49"].thresholds
    assert thresholds.rtt_good == thresholds.rtt_bad == 0.3
    assert thresholds.loss_good == thresholds.loss_bad == 0.05


def test_thresholds_in_a_site_override(tmp_path: Path) -> None:
    text = TREE.replace(
        'address = "127.49.7.1"', 'address = "127.49.7.1"\n[sites.thresholds]\nloss_bad = 0.001'
    )
    path, lines = errors(tmp_path, text)
    header = line_of(text, "[sites.thresholds]")
    # loss_good is not written in the site: the error falls back to the table header
    assert lines == [
        f"{path}:{header}: sites[3].thresholds.loss_good: "
        "loss_good (0.01) is worse than loss_bad (0.001)"
    ]


def test_unknown_profile_and_level(tmp_path: Path) -> None:
    text = TREE + site(
        "20801", "Xã Trà Mai", "commune", "127.49.16.11", parent="516",
        extra='profile = "vung-cao"\n',
    ) + site("t1", "Thôn 1", "thon", "127.49.16.100", parent="20800")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{line_of(text, 'vung-cao')}: sites[5].profile: unknown profile 'vung-cao'",
        f"{path}:{key_line(text, 'level', 'thon')}: sites[6].level: unknown level 'thon' "
        "(levels: 'province', 'district', 'commune')",
    ]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ('{ Gso = "49" }', "label name 'Gso' must match [a-z_][a-z0-9_]*"),
        ('{ "1st" = "x" }', "label name '1st' must match [a-z_][a-z0-9_]*"),
        ('{ "loại" = "xã" }', "label name 'loại' must match [a-z_][a-z0-9_]*"),
        ('{ "unit-type" = "xã" }', "label name 'unit-type' must match [a-z_][a-z0-9_]*"),
        ('{ site = "x" }', "label name 'site' is reserved by bridgemon"),
        ('{ name = "x" }', "label name 'name' is reserved by bridgemon"),
        ('{ level = "x" }', "label name 'level' is reserved by bridgemon"),
        ('{ job = "x" }', "label name 'job' is reserved by bridgemon"),
        ('{ __meta = "x" }', "label name '__meta' is reserved by bridgemon"),
    ],
)
def test_bad_label_names(tmp_path: Path, labels: str, message: str) -> None:
    text = TREE.replace('address = "127.49.0.1"', f'address = "127.49.0.1"\nlabels = {labels}')
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:{line_of(text, 'labels =')}: sites[0].labels: {message}"]


def test_label_values_must_be_strings(tmp_path: Path) -> None:
    text = TREE.replace('address = "127.49.0.1"', 'address = "127.49.0.1"\nlabels = { gso = 49 }')
    path, lines = errors(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:{line_of(text, 'labels =')}: sites[0].labels.gso: ")


def test_good_labels(tmp_path: Path) -> None:
    text = TREE.replace(
        'address = "127.49.0.1"',
        'address = "127.49.0.1"\nlabels = { gso = "49", unit_type = "tỉnh", _zone = "trung" }',
    )
    assert load(tmp_path, text).inventory.sites["49"].labels == {
        "gso": "49", "unit_type": "tỉnh", "_zone": "trung",
    }


def test_bad_ids(tmp_path: Path) -> None:
    text = TREE + site("Xã Trà Mai", "Xã Trà Mai", "commune", "127.49.16.11", parent="516")
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:{key_line(text, 'id', 'Xã Trà Mai')}: sites[5].id: bad id 'Xã Trà Mai': "
        "use letters, digits, '.', '_' or '-' (at most 64, no spaces)"
    ]


def test_many_errors_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    text = (
        '[monitor]\nwindow = "năm"\n'  # shape error in [monitor]
        + TREE
        + site(  # shape errors: unknown key and bad address
            "20801", "Xã Trà Mai", "commune", "127.49.16.300", parent="516",
            extra='ping = "yes"\n',
        )
        # relation errors in other sites
        + site("20802", "Xã Trà Cang", "commune", "127.49.16.12", parent="49")
        + site("20500", "Phường Điện Ngọc", "commune", "127.49.7.11", parent="507")
        + site("20803", "Xã Trà Tập", "commune", "127.49.16.13", parent="518")
    )
    path, lines = errors(tmp_path, text)
    assert lines == [
        f"{path}:2: monitor.window: Input should be a valid integer, "
        "unable to parse string as an integer",
        f"{path}:{line_of(text, '127.49.16.300')}: sites[5].address: bad address "
        "'127.49.16.300': give an IPv4/IPv6 address or a host name",
        f"{path}:{line_of(text, 'ping =')}: sites[5].ping: "
        "unknown key (check the spelling; see docs/inventory.md)",
        f"{path}:{key_line(text, 'parent', '49', 2)}: sites[6].parent: parent '49' is a "
        "province site; a commune site's parent must be a district site",
        f"{path}:{key_line(text, 'id', '20500', 1)}: sites[7].id: duplicate site id "
        f"'20500' (first at line {key_line(text, 'id', '20500')})",
        f"{path}:{key_line(text, 'parent', '518')}: sites[8].parent: "
        "unknown parent site '518'",
    ]


def test_every_error_line_has_the_documented_shape(tmp_path: Path) -> None:
    text = 'colour = "xanh"\n' + TREE + site("20801", "Xã Trà Mai", "commune", "1.2.3.999")
    path, lines = errors(tmp_path, text)
    assert len(lines) == 2
    for line in lines:
        match = ISSUE_LINE.match(line)
        assert match is not None, line
        assert match["path"] == str(path)
        assert int(match["line"]) >= 1
        assert match["field"]


def test_config_issue_formatting() -> None:
    assert str(ConfigIssue("a.toml", 7, "sites[0].id", "bad")) == "a.toml:7: sites[0].id: bad"
    assert str(ConfigIssue("a.toml", 3, "", "TOML syntax: x")) == "a.toml:3: TOML syntax: x"


def test_config_error_sorts_issues_by_line() -> None:
    error = ConfigError(
        [ConfigIssue("a.toml", 9, "x", "late"), ConfigIssue("a.toml", 2, "y", "early")]
    )
    assert [issue.line for issue in error.issues] == [2, 9]
    assert str(error) == "a.toml:2: y: early\na.toml:9: x: late"


# --------------------------------------------------------------------------- cycles, no loops


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            site("49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1")
            + site("cum-bac", "Cụm phía Bắc", "cluster", "127.49.1.1", parent="cum-bac"),
            "a site cannot be its own parent",
        ),
        (
            site("49", "UBND tỉnh Quảng Nam", "province", "127.49.0.1")
            + site("cum-bac", "Cụm phía Bắc", "cluster", "127.49.1.1", parent="tram-a")
            + site("tram-a", "Trạm Điện Bàn", "hub", "127.49.1.2", parent="cum-bac")
            + site("tram-b", "Trạm Hội An", "hub", "127.49.1.3", parent="cum-bac"),
            "parent cycle: cum-bac -> tram-a -> cum-bac",
        ),
    ],
)
def test_a_parent_cycle_with_an_under_selector_is_an_error_not_a_loop(
    tmp_path: Path, tree: str, message: str
) -> None:
    # Before: the cycle was reported but its sites still built, and resolving
    # "under:cum-bac" walked the cycle forever (~12 MB/s). The cycle's own error is
    # the only one: the event is not told that its site is unknown.
    text = CYCLIC_LEVELS + tree + (
        '\n[[events]]\nid = "hn"\ntitle = "Họp"\nstart = 2026-12-15T08:00:00\n'
        'participants = "under:cum-bac"\n'
    )
    path, lines = errors(tmp_path, text)
    line = line_of(text, 'parent = "')
    assert lines == [f"{path}:{line}: sites[1].parent: {message}"]


# --------------------------------------------------------------------------- honest lines


@pytest.mark.parametrize("breaker", ["\x85", "\u2028", "\u2029"])
def test_line_numbers_count_only_newlines(tmp_path: Path, breaker: str) -> None:
    # TOML allows these inside strings and comments; str.splitlines breaks at them too,
    # which used to push every later line number past the truth (and past the file's end).
    text = TREE.replace('name = "UBND tỉnh Quảng Nam"',
                        f'name = "UBND tỉnh{breaker * 3}Quảng Nam" # {breaker * 3}')
    text = text.replace('address = "127.49.7.10"', 'address = "127.49.7.999"')
    path, lines = errors(tmp_path, text)
    line = text[: text.index("127.49.7.999")].count("\n") + 1
    assert lines == [
        f"{path}:{line}: sites[4].address: bad address '127.49.7.999': "
        "give an IPv4/IPv6 address or a host name"
    ]


def test_syntax_error_at_the_end_names_the_last_line_counted_as_toml_does(
    tmp_path: Path,
) -> None:
    text = 'title = "a\u2028b\u2028c\u2028d"\n[[sites]]\nid = "49'  # unterminated, at the end
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:3: TOML syntax: Unterminated string"]


def test_a_user_value_cannot_forge_an_error_line(tmp_path: Path) -> None:
    # The level of site 49 used to be copied unquoted into site 516's message ("parent '49'
    # is a province\n/etc/...: ..."); now that message waits for 49's own error to be fixed.
    forged = "province\\n/etc/bridgemon/sites.toml:1: sites[9].id: giả mạo"
    text = TREE.replace('level = "province"', f'level = "{forged}"', 1)
    text = text.replace('address = "127.49.16.10"',  # a key with a newline, in a field
                        'address = "127.49.16.10"\nlabels = { "x\\ny:2: z" = 1 }')
    path, lines = errors(tmp_path, text)
    labels = line_of(text, "labels =")
    assert lines == [
        f"{path}:4: sites[0].level: unknown level 'province\\n/etc/bridgemon/sites.toml:1: "
        "sites[9].id: giả mạo' (levels: 'province', 'district', 'commune')",
        f'{path}:{labels}: sites[2].labels."x\\ny:2: z": Input should be a valid string',
    ]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("a\rb\x0bc\x0cd", "a\\rb\\x0bc\\x0cd"),
        ("a\x1cb\x1dc\x1ed\x85e", "a\\x1cb\\x1dc\\x1ed\\x85e"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("Xã Trà Leng", "Xã Trà Leng"),
    ],
)
def test_an_issue_is_always_one_line(message: str, shown: str) -> None:
    text = str(ConfigIssue("a.toml", 3, "sites[0].name", message))
    assert text == f"a.toml:3: sites[0].name: {shown}"
    assert text.splitlines() == [text]


@pytest.mark.parametrize("value", ["49\\n", "hub-1.a_b\\n"])
def test_ids_may_not_end_in_a_newline(tmp_path: Path, value: str) -> None:
    # "$" matches before a final newline: the id pattern let "49\n" through.
    text = TREE.replace('id = "20500"', f'id = "{value}"')
    path, lines = errors(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:{line_of(text, value)}: sites[4].id: bad id ")


# --------------------------------------------------------------------------- what tomllib throws


def test_nesting_a_thousand_deep_is_an_error_with_a_line(tmp_path: Path) -> None:
    text = TREE + "\n[monitor]\nwindow = 5\nnote = " + "[" * 1000 + "]" * 1000 + "\n"
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:{line_of(text, 'note =')}: TOML nested too deeply "
                     "(1000 levels of arrays or inline tables)"]


def test_inline_tables_a_thousand_deep_too(tmp_path: Path) -> None:
    text = "x = 1\ncontact = " + "{ a = " * 1000 + "1" + " }" * 1000 + "\n" + TREE
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:2: TOML nested too deeply "
                     "(1000 levels of arrays or inline tables)"]


def test_an_integer_of_5000_digits_is_an_error_with_a_line(tmp_path: Path) -> None:
    text = TREE + '\n[monitor]\nname = "' + "7" * 6000 + '"\nwindow = ' + "9" * 5000 + "\n"
    path, lines = errors(tmp_path, text)
    assert lines == [f"{path}:{line_of(text, 'window =')}: a number of 5000 digits is too "
                     "long (at most 4300)"]


@pytest.mark.parametrize(
    ("toml", "field", "message"),
    [
        ("[monitor]\ninterval = 1" + "0" * 400, "monitor.interval", "at most 366d (a year)"),
        ('[monitor]\nevent_window = "99999999999d"', "monitor.event_window", "at most 366d"),
        ("[profiles.xa.thresholds]\nrtt_bad = 1e400", "profiles.xa.thresholds.rtt_bad",
         "finite"),
        ('[profiles.xa.checks.web]\ntype = "https"\ncert_expiry_warn = "400d"',
         "profiles.xa.checks.web.cert_expiry_warn", "at most 366d"),
    ],
)
def test_huge_durations_are_errors(tmp_path: Path, toml: str, field: str, message: str) -> None:
    path, lines = errors(tmp_path, toml + "\n" + TREE)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:{toml.count(chr(10)) + 1}: {field}: bad duration ")
    assert message in lines[0]


@pytest.mark.parametrize("listen", ["x" * 70 + ".vn:9470", "a..b:9470", "a b:9470",
                                    "ḿcu.example:9470"])
def test_listen_must_be_something_the_daemon_can_bind(tmp_path: Path, listen: str) -> None:
    # All passed check-config. Then `run` died with a UnicodeError traceback binding the
    # first two (an empty or 64+ character label: idna refuses it before DNS is asked), and
    # could not bind the others ("cannot start").
    path, lines = errors(tmp_path, f'[monitor]\nlisten = "{listen}"\n' + TREE)
    assert len(lines) == 1 and lines[0].startswith(f"{path}:2: monitor.listen: listen must ")


@pytest.mark.parametrize("listen", ["localhost:9470", "[::1]:9470", "0.0.0.0:80",
                                    "bridgemon.ubnd.quangnam.gov.vn:9470"])
def test_listen_hosts_that_bind(tmp_path: Path, listen: str) -> None:
    # Off loopback the pages need users (tests/test_web_auth.py tells the refusal).
    from tests.test_web_auth import user_toml

    web = "" if listen.startswith(("localhost", "[::1]")) else (
        "[web]\nallow_plain_http = true\n" + user_toml("an", "operator"))
    load(tmp_path, f'[monitor]\nlisten = "{listen}"\n' + web + TREE)


# --------------------------------------------------------------------------- the state directory


def test_the_state_directory_is_next_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = tmp_path / "etc" / "sites.toml"
    config.write_text(TREE, encoding="utf-8")
    assert load_config(config).monitor.state_dir == tmp_path / "etc" / "state"
    # a relative path given to -c too: resolved now, not at whatever cwd comes later
    assert load_config(Path("../etc/sites.toml")).monitor.state_dir.resolve() == (
        tmp_path / "etc" / "state")
    config.write_text('[monitor]\nstate_dir = "lich-su"\n' + TREE, encoding="utf-8")
    assert load_config(config).monitor.state_dir == tmp_path / "etc" / "lich-su"
    config.write_text(f'[monitor]\nstate_dir = "{tmp_path / "var"}"\n' + TREE,
                      encoding="utf-8")
    assert load_config(config).monitor.state_dir == tmp_path / "var"


def test_state_directory_from_systemd_wins_over_the_default_not_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var-lib"))
    path = write(tmp_path, TREE)
    assert load_config(path).monitor.state_dir == tmp_path / "var-lib"
    path.write_text('[monitor]\nstate_dir = "lich-su"\n' + TREE, encoding="utf-8")
    assert load_config(path).monitor.state_dir == tmp_path / "lich-su"
    monkeypatch.setenv("STATE_DIRECTORY", "relative")
    monkeypatch.chdir(tmp_path)
    path.write_text(TREE, encoding="utf-8")
    assert load_config(path).monitor.state_dir == tmp_path / "relative"
