"""Shards: parsing N/M, the split by subtree, how little moves when a shard is added, and
the configuration and command-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.config import parse_config
from bridgemon.inventory import Inventory
from bridgemon.shards import Shard, owners, parse_shard, share, subtree_key
from tests.helpers import config_errors, inventory_toml

PROVINCE = {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province",
            "address": "127.0.0.1"}


def national(districts: int, communes: int) -> list[dict[str, object]]:
    """A province, ``districts`` districts under it and ``communes`` communes under each."""
    sites: list[dict[str, object]] = [PROVINCE]
    for d in range(districts):
        sites.append({"id": f"d{d}", "name": f"Huyện {d}", "level": "district",
                      "parent": "49", "address": f"127.1.{d // 250}.{d % 250 + 1}"})
        for c in range(communes):
            sites.append({"id": f"d{d}c{c}", "name": f"Xã {d}-{c}", "level": "commune",
                          "parent": f"d{d}", "address": f"127.2.{d % 250}.{c + 1}"})
    return sites


def inventory_of(sites: list[dict[str, object]], monitor: str = "") -> Inventory:
    text = inventory_toml(sites, port=9470)
    if monitor:
        text = text.replace("window = 3\n", f"window = 3\n{monitor}\n", 1)
    return parse_config(text, Path("sites.toml")).inventory


@pytest.mark.parametrize(("text", "expected"), [
    ("1/1", Shard(1, 1)), ("2/3", Shard(2, 3)), (" 3 / 3 ", Shard(3, 3)),
])
def test_good_shards_parse(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("4/3", "between 1 and 3"), ("0/3", "between 1 and 3"), ("a/b", "must be N/M"),
    ("1/0", "at least 1"), ("", "must be N/M"), ("1/2/3", "must be N/M"), ("-1/3", "N/M"),
])
def test_bad_shards_say_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_shard(text)


@pytest.mark.parametrize(("text", "words"), [
    ("4/3", "between 1 and 3"), ("0/3", "between 1 and 3"), ("a/b", "must be N/M"),
    ("1/0", "at least 1"),
])
def test_a_bad_shard_in_the_file_names_its_line(text: str, words: str) -> None:
    toml = inventory_toml([PROVINCE], port=9470).replace(
        "window = 3\n", f'window = 3\nshard = "{text}"\n', 1)
    line = toml.splitlines().index(f'shard = "{text}"') + 1
    errors = config_errors(toml)
    assert len(errors) == 1
    assert errors[0].startswith(f"sites.toml:{line}: monitor.shard: ") and words in errors[0]


def test_the_shards_cover_every_site_once_and_keep_subtrees_together() -> None:
    inventory = inventory_of(national(40, 6))
    parts = [share(inventory, Shard(n, 3)) for n in (1, 2, 3)]
    exported = [site for part in parts for site in part.exported]
    assert sorted(exported) == sorted(inventory.sites)  # each once
    for part in parts:
        assert "49" in part.inventory.sites  # the root: probed by every shard
        for site_id in part.exported:
            parent = inventory.sites[site_id].parent
            # parent_down is judged inside the shard: a site's parent is always there.
            assert parent is None or parent in part.inventory.sites
    assert all(len(part.exported) > 30 for part in parts)  # 40 subtrees of 7: none empty


def test_subtree_key_is_the_top_level_site_below_the_root() -> None:
    inventory = inventory_of(national(2, 2))
    assert subtree_key(inventory, "49") == "49"
    assert subtree_key(inventory, "d1") == "d1"
    assert subtree_key(inventory, "d1c0") == "d1"


def test_adding_a_shard_moves_about_one_in_m_plus_one_and_only_to_it() -> None:
    inventory = inventory_of(national(1200, 0))
    for count in (1, 2, 3, 5):
        before, after = owners(inventory, count), owners(inventory, count + 1)
        moved = [site for site in before if before[site] != after[site]]
        assert all(after[site] == count + 1 for site in moved)  # only to the new shard
        share_moved = len(moved) / len(before)
        # 1200 subtrees: the binomial spread is about 0.013; 0.05 is ~4 standard deviations
        assert abs(share_moved - 1 / (count + 1)) < 0.05, (count, share_moved)


@settings(max_examples=40, deadline=2000)
@given(st.text(min_size=1, max_size=12))
def test_parse_shard_never_raises_anything_but_value_error(text: str) -> None:
    try:
        shard = parse_shard(text)
    except ValueError:
        return
    assert 1 <= shard.index <= shard.count


def bridgemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_sites_shows_the_split_and_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(inventory_toml(national(30, 3), port=9470), encoding="utf-8")
    shown: list[str] = []
    for n in (1, 2, 3):
        done = bridgemon("-c", str(path), "sites", "--shard", f"{n}/3", "--format", "json")
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        shown += [row["id"] for row in rows if row["shard"] == n]
        assert f"shard {n}/3: " in done.stderr and "per shard: 1/3 " in done.stderr
        # its own sites, and the root above them
        assert {row["shard"] for row in rows} <= {n, rows[0]["shard"]}
    assert sorted(shown) == sorted(site["id"] for site in national(30, 3))


@pytest.mark.parametrize("bad", ["4/3", "0/3", "a/b", "1/0"])
@pytest.mark.parametrize("command", ["sites", "run"])
def test_a_bad_shard_flag_is_a_usage_error(tmp_path: Path, command: str, bad: str) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(inventory_toml([PROVINCE], port=9470), encoding="utf-8")
    done = bridgemon("-c", str(path), command, "--shard", bad)
    assert done.returncode == 2
    assert "--shard" in done.stderr and bad in done.stderr
