"""The site tree: walk order and depth, ancestors, descendants and selectors."""

from __future__ import annotations

import re

import pytest

from bridgemon.inventory import Inventory, Level, SelectorError, Site
from bridgemon.specs import IcmpSpec, Thresholds

LEVELS = (
    Level("province", "Cấp tỉnh", "default", ()),
    Level("district", "Cấp huyện", "default", ("province",)),
    Level("commune", "Cấp xã", "default", ("district",)),
)


def make_site(site_id: str, name: str, level: str, parent: str | None, n: int) -> Site:
    return Site(
        id=site_id,
        name=name,
        level=level,
        address=f"127.49.0.{n}",
        parent=parent,
        profile="default",
        contact=None,
        labels={},
        interval=30.0,
        icmp=IcmpSpec(),
        thresholds=Thresholds(),
    )


def quang_nam() -> Inventory:
    """A fresh tree, in file order (children listed out of tree order on purpose)."""
    rows = [
        ("49", "UBND tỉnh Quảng Nam", "province", None),
        ("502", "Thành phố Tam Kỳ", "district", "49"),
        ("20335", "Phường Tân Thạnh", "commune", "502"),
        ("516", "Huyện Nam Trà My", "district", "49"),
        ("20338", "Phường Phước Hòa", "commune", "502"),  # after 516 in the file
        ("20800", "Xã Trà Leng", "commune", "516"),
        ("507", "Thị xã Điện Bàn", "district", "49"),
    ]
    sites = {
        site_id: make_site(site_id, name, level, parent, n)
        for n, (site_id, name, level, parent) in enumerate(rows, start=1)
    }
    return Inventory(levels=LEVELS, sites=sites)


def test_children_and_roots() -> None:
    inventory = quang_nam()
    assert inventory.roots == ("49",)
    assert inventory.children["49"] == ("502", "516", "507")
    assert inventory.children["502"] == ("20335", "20338")
    assert inventory.children["20800"] == ()
    assert len(inventory) == 7


def test_walk_is_depth_first_in_file_order_with_depths() -> None:
    walk = [(site.id, depth) for site, depth in quang_nam().walk()]
    assert walk == [
        ("49", 0),
        ("502", 1),
        ("20335", 2),
        ("20338", 2),
        ("516", 1),
        ("20800", 2),
        ("507", 1),
    ]


def test_walk_with_several_roots() -> None:
    sites = {
        "48": make_site("48", "UBND thành phố Đà Nẵng", "province", None, 1),
        "49": make_site("49", "UBND tỉnh Quảng Nam", "province", None, 2),
        "20194": make_site("20194", "Phường Hải Châu", "commune", "48", 3),
    }
    inventory = Inventory(levels=LEVELS, sites=sites)
    assert inventory.roots == ("48", "49")
    assert [(s.id, d) for s, d in inventory.walk()] == [("48", 0), ("20194", 1), ("49", 0)]


def test_level_lookup() -> None:
    inventory = quang_nam()
    assert inventory.level("district").name == "Cấp huyện"
    assert inventory.level("commune").parents == ("district",)
    with pytest.raises(KeyError):
        inventory.level("village")


def test_ancestors_parent_first() -> None:
    inventory = quang_nam()
    assert [s.id for s in inventory.ancestors("20800")] == ["516", "49"]
    assert [s.id for s in inventory.ancestors("502")] == ["49"]
    assert inventory.ancestors("49") == []


def test_descendants_in_tree_order() -> None:
    inventory = quang_nam()
    assert inventory.descendants("49") == ["502", "20335", "20338", "516", "20800", "507"]
    assert inventory.descendants("502") == ["20335", "20338"]
    assert inventory.descendants("20335") == []
    assert inventory.descendants("507") == []


def ids(sites: list[Site]) -> list[str]:
    return [site.id for site in sites]


def test_select_by_id() -> None:
    assert ids(quang_nam().select("516")) == ["516"]


def test_select_by_level() -> None:
    inventory = quang_nam()
    assert ids(inventory.select("level:district")) == ["502", "516", "507"]
    assert ids(inventory.select("level:commune")) == ["20335", "20338", "20800"]
    assert ids(inventory.select("level:province")) == ["49"]


def test_select_under_includes_the_site_itself() -> None:
    inventory = quang_nam()
    assert ids(inventory.select("under:502")) == ["502", "20335", "20338"]
    assert ids(inventory.select("under:20800")) == ["20800"]
    assert ids(inventory.select("under:49")) == ids([s for s, _ in inventory.walk()])


def test_select_union_in_tree_order_without_duplicates() -> None:
    inventory = quang_nam()
    assert ids(inventory.select("20800, under:502, 507")) == [
        "502", "20335", "20338", "20800", "507",
    ]
    assert ids(inventory.select("level:province,under:516,516,20800")) == ["49", "516", "20800"]


@pytest.mark.parametrize("everything", ["*", "all", " * ", "20800,*"])
def test_select_everything(everything: str) -> None:
    inventory = quang_nam()
    assert ids(inventory.select(everything)) == ids([s for s, _ in inventory.walk()])


def test_select_ignores_empty_terms_in_a_union() -> None:
    assert ids(quang_nam().select("502,,507,")) == ["502", "507"]


@pytest.mark.parametrize("expression", ["", " ", ",", " , ,"])
def test_select_empty_is_an_error(expression: str) -> None:
    with pytest.raises(SelectorError, match="empty selector"):
        quang_nam().select(expression)


def test_select_unknown_id() -> None:
    with pytest.raises(SelectorError, match=r"unknown site id '999'"):
        quang_nam().select("502,999")


def test_select_unknown_level_lists_the_levels() -> None:
    with pytest.raises(SelectorError) as info:
        quang_nam().select("level:village")
    assert str(info.value) == (
        "unknown level 'village' in 'level:village' (levels: province, district, commune)"
    )


def test_select_under_unknown_site() -> None:
    with pytest.raises(SelectorError, match=r"unknown site '517' in 'under:517'"):
        quang_nam().select("under:517")


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        quang_nam().select("nowhere")


def test_probe_key_changes_with_measurement_settings() -> None:
    site = make_site("502", "Thành phố Tam Kỳ", "district", "49", 2)
    renamed = make_site("502", "TP Tam Kỳ", "district", "49", 2)
    moved = make_site("502", "Thành phố Tam Kỳ", "district", "49", 3)
    assert renamed.probe_key() == site.probe_key()
    assert moved.probe_key() != site.probe_key()


# --------------------------------------------------------------------------- no cycles


def _tree(rows: list[tuple[str, str | None]]) -> dict[str, Site]:
    return {
        site_id: make_site(site_id, f"Điểm cầu {site_id}", "district", parent, n)
        for n, (site_id, parent) in enumerate(rows, start=1)
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("49", None), ("cum", "cum")], "parent cycle: 'cum' -> 'cum'"),
        ([("49", None), ("a", "b"), ("b", "a"), ("c", "a")], "parent cycle: 'a' -> 'b' -> 'a'"),
        ([("x", "y"), ("y", "z"), ("z", "x")], "parent cycle: 'x' -> 'y' -> 'z' -> 'x'"),
    ],
)
def test_an_inventory_with_a_parent_cycle_cannot_be_built(
    rows: list[tuple[str, str | None]], message: str
) -> None:
    # Built anyway, ``under:X`` over it walked the cycle forever, growing ~12 MB/s.
    with pytest.raises(ValueError, match=re.escape(message)):
        Inventory(levels=LEVELS, sites=_tree(rows))


def test_parent_cycles_names_each_cycle_once() -> None:
    from bridgemon.inventory import parent_cycles

    parents: dict[str, str | None] = {
        "tail": "a", "a": "b", "b": "a", "self": "self", "49": None, "orphan": "gone",
        "p": "q", "q": "r", "r": "p", "below": "r",
    }
    assert parent_cycles(parents) == [("a", "b"), ("self",), ("p", "q", "r")]
    assert parent_cycles({"49": None, "502": "49", "20335": "502"}) == []


def test_a_forest_with_missing_parents_is_still_fine() -> None:
    # A parent outside the inventory (a subset of a bigger one) makes a root, not an error.
    inventory = Inventory(levels=LEVELS, sites=_tree([("502", "49"), ("20335", "502")]))
    assert inventory.roots == ("502",)
    assert inventory.descendants("502") == ["20335"]


def test_selector_errors_name_the_missing_site() -> None:
    with pytest.raises(SelectorError) as under:
        quang_nam().select("under:517")
    with pytest.raises(SelectorError) as plain:
        quang_nam().select("502,999")
    with pytest.raises(SelectorError) as level:
        quang_nam().select("level:village")
    assert (under.value.site, plain.value.site, level.value.site) == ("517", "999", None)
