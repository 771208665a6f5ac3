"""Fuzz regression of the loader: whatever the text, ``parse_config`` either returns a
Config that everything downstream can use, or raises ConfigError whose every line starts
with the file's path and names a line the file has. Never another exception, never a hang.

Two sources of text: TOML-ish fragments strung together at random, and random mutations
of the head of the shipped ``config/sites.toml`` (plus events and checks, which the
shipped file has none of). Bounded: a few hundred examples, a few seconds.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridgemon.config import Config, ConfigError, parse_config
from bridgemon.config_source import line_count
from bridgemon.events import event_json
from bridgemon.testrun.pretests import missed, upcoming

REPO = Path(__file__).resolve().parents[1]
PATH = Path("fuzz") / "sites.toml"


def _shipped_head(sites: int) -> str:
    """The shipped file up to (not including) its ``sites + 1``-th site: every section
    but most of the sites, so one parse costs milliseconds, not tens of them."""
    text = (REPO / "config" / "sites.toml").read_text(encoding="utf-8")
    cut = -1
    for _ in range(sites + 1):
        cut = text.index("\n[[sites]]", cut + 1)
    return text[: cut + 1]


EXTRA = """
[profiles.default.checks.web]
type = "http"
path = "/api/status"
expect_status = [200, 401]

[profiles.province.checks.sip]
type = "sip"
transport = "udp"

[[events]]
id = "hn-12"
title = "Hội nghị trực tuyến UBND tỉnh tháng 12"
start = 2026-12-15T08:00:00
timezone = "Asia/Ho_Chi_Minh"
duration = "3h"
participants = ["49", "level:district", "under:502"]
pretests = ["24h", "2h", "30m"]
"""

BASE = _shipped_head(12) + EXTRA

# Pieces of TOML and of the values the loader has tripped on before.
FRAGMENTS = [
    "\n", "\r\n", " ", "\t", "=", " = ", ".", ",", "[", "]", "[[", "]]", "{", "}", '"', "'",
    '"""', "'''", "#", "\\", "\\n", "\\u2028",
    "\x0c", "\x0b", "\x1c", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\x7f",
    "[[sites]]\n", "[monitor]\n", "[[levels]]\n", "[[events]]\n", "[profiles.xa]\n",
    "[sites.icmp]\n", "[sites.checks.web]\n", "[profiles.default.checks.x]\n",
    'id = "49"\n', 'id = "49\\n"\n', 'id = "cum"\n', 'parent = "49"\n', 'parent = "cum"\n',
    'level = "province"\n', 'level = "district"\n', 'level = "x\\n/etc/x:1: y"\n',
    'name = "Xã Trà Leng"\n', 'address = "127.0.0.1"\n', 'address = "::1"\n',
    'participants = "under:cum"\n', 'participants = "under:49"\n', 'title = "Họp"\n',
    "start = 2026-12-15T08:00:00\n", "start = 9999-12-31T23:00:00\n",
    "start = 0001-01-01T00:00:00+14:00\n", "start = 0001-01-01T00:00:00\n",
    'pretests = ["99999999999d"]\n', 'pretests = ["366d"]\n', 'duration = "7d"\n',
    'interval = "1e400"\n', "interval = 1e400\n", "interval = 1" + "0" * 400 + "\n",
    "window = " + "9" * 4400 + "\n", "x = " + "[" * 1200 + "]" * 1200 + "\n",
    "y = " + "{a=" * 600 + "1" + "}" * 600 + "\n", "a" + ".a" * 300 + " = 1\n",
    'listen = "ḿ.vn:80"\n', 'state_dir = "st"\n', 'type = "https"\n',
    'url = "http://127.0.0.1/a b"\n', 'url = "https://[::1/"\n', 'path = "x"\n',
    'ca_file = "missing.pem"\n', 'labels = { "a\\nb" = 1 }\n', 'timezone = "Mars/Base"\n',
    'parents = ["commune", "district\\n"]\n', "count = -1\n", "spread = 1e308\n",
    "spread = " + "7" * 350 + "\n", "loss_good = nan\n", "rtt_good = inf\n",
]
VALUES = [
    '""', '"x"', "0", "-1", "1e400", "nan", "-inf", "true", "[]", "{}", "[[1]]",
    "2026-12-15", "08:00:00", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    '"99999999999d"', "1" + "0" * 400, '"' + "x" * 300 + '"', '"\\u2028"', '"a\\nb"',
]

_FRAGMENT = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6))


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    lines = BASE.split("\n")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        operation = draw(st.sampled_from(["insert", "replace", "value", "delete", "duplicate",
                                          "swap"]))
        if operation == "insert":
            column = draw(st.integers(min_value=0, max_value=len(lines[at])))
            lines[at] = lines[at][:column] + draw(_FRAGMENT) + lines[at][column:]
        elif operation == "replace":
            lines[at] = draw(_FRAGMENT)
        elif operation == "value" and " = " in lines[at]:
            lines[at] = lines[at].split(" = ", 1)[0] + " = " + draw(st.sampled_from(VALUES))
        elif operation == "delete":
            del lines[at]
        elif operation == "duplicate":
            lines.insert(at, lines[at])
        elif operation == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
    return "\n".join(lines)


def _usable(config: Config) -> None:
    """What the daemon does with a loaded config right away must not raise either."""
    inventory = config.inventory
    order = inventory.order
    assert sorted(order) == sorted(inventory.sites)  # a tree: every site once
    for site_id in inventory.roots:
        inventory.descendants(site_id)
        inventory.ancestors(site_id)
    for event in config.events:
        event_json(event)
        upcoming((event,), event.start - timedelta(days=1))
        missed((event,), event.start, {})
        event.start.timestamp()
        event.end.timestamp()


def _loads_or_names_a_line(text: str) -> None:
    try:
        config = parse_config(text, PATH)
    except ConfigError as caught:
        assert caught.issues
        last = line_count(text)
        for issue in caught.issues:
            assert issue.path == str(PATH)
            assert 1 <= issue.line <= last, (issue, last)
        lines = str(caught).splitlines()
        assert len(lines) == len(caught.issues)  # no message spills onto a forged line
        assert all(line.startswith(f"{PATH}:") for line in lines)
        return
    _usable(config)


def test_the_fuzz_base_is_valid() -> None:
    config = parse_config(BASE, PATH)
    assert len(config.inventory) == 12 and len(config.events) == 1


@given(st.lists(_FRAGMENT, max_size=40).map("".join))
@example("[[sites]]\nid = \"c\"\nname = \"C\"\nlevel = \"district\"\nparent = \"c\"\n"
         "address = \"127.0.0.2\"\n[[events]]\nid = \"e\"\ntitle = \"H\"\n"
         "start = 2026-12-15T08:00:00\nparticipants = \"under:c\"\n")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_toml_ish_text(text: str) -> None:
    _loads_or_names_a_line(text)


@given(_mutated())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_mutations_of_the_shipped_inventory(text: str) -> None:
    _loads_or_names_a_line(text)
