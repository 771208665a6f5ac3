"""SourceMap: the line of every TOML key and header, so errors can say PATH:LINE."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.config_source import (
    SourceMap,
    deepest_nesting,
    line_count,
    longest_number,
    toml_key,
    toml_lines,
)


def test_top_level_keys_and_table_headers() -> None:
    text = """\
title = "Điểm cầu"

[monitor]
interval = "30s"
window = 5
"""
    source = SourceMap(text)
    assert source.line_of(("title",)) == 1
    assert source.line_of(("monitor",)) == 3
    assert source.line_of(("monitor", "interval")) == 4
    assert source.line_of(("monitor", "window")) == 5


def test_nested_dotted_headers() -> None:
    text = """\
[profiles.default]
interval = "30s"

[profiles.default.icmp]
count = 5

[profiles.province.thresholds]
rtt_good = "50ms"
"""
    source = SourceMap(text)
    assert source.line_of(("profiles", "default")) == 1
    assert source.line_of(("profiles", "default", "interval")) == 2
    assert source.line_of(("profiles", "default", "icmp")) == 4
    assert source.line_of(("profiles", "default", "icmp", "count")) == 5
    assert source.line_of(("profiles", "province", "thresholds", "rtt_good")) == 8


def test_array_of_tables_gets_indexes() -> None:
    text = """\
[[sites]]
id = "49"
name = "UBND tỉnh Quảng Nam"

[[sites]]
id = "502"
name = "Thành phố Tam Kỳ"

[[sites]]
id = "20335"
"""
    source = SourceMap(text)
    assert source.line_of(("sites", 0)) == 1
    assert source.line_of(("sites", 0, "id")) == 2
    assert source.line_of(("sites", 0, "name")) == 3
    assert source.line_of(("sites", 1)) == 5
    assert source.line_of(("sites", 1, "id")) == 6
    assert source.line_of(("sites", 1, "name")) == 7
    assert source.line_of(("sites", 2, "id")) == 10


def test_sub_tables_attach_to_the_latest_array_entry() -> None:
    text = """\
[[sites]]
id = "49"
[sites.icmp]
size = 1200
[sites.thresholds]
rtt_good = "50ms"

[[sites]]
id = "502"
[sites.icmp]
count = 10
"""
    source = SourceMap(text)
    # tomllib agrees on where those tables belong
    parsed = tomllib.loads(text)
    assert parsed["sites"][0]["icmp"] == {"size": 1200}
    assert parsed["sites"][1]["icmp"] == {"count": 10}
    assert source.line_of(("sites", 0, "icmp")) == 3
    assert source.line_of(("sites", 0, "icmp", "size")) == 4
    assert source.line_of(("sites", 0, "thresholds", "rtt_good")) == 6
    assert source.line_of(("sites", 1, "icmp")) == 10
    assert source.line_of(("sites", 1, "icmp", "count")) == 11


def test_two_independent_arrays_count_separately() -> None:
    text = """\
[[levels]]
id = "province"
[[sites]]
id = "49"
[[levels]]
id = "commune"
[[sites]]
id = "20335"
"""
    source = SourceMap(text)
    assert source.line_of(("levels", 0, "id")) == 2
    assert source.line_of(("levels", 1, "id")) == 6
    assert source.line_of(("sites", 0, "id")) == 4
    assert source.line_of(("sites", 1, "id")) == 8


def test_nested_array_of_tables_is_indexed_per_parent_entry() -> None:
    text = """\
[[sites]]
id = "a"
[[sites.checks]]
type = "tcp"
[[sites.checks]]
type = "sip"
[[sites]]
id = "b"
[[sites.checks]]
type = "http"
"""
    source = SourceMap(text)
    assert tomllib.loads(text)["sites"][1]["checks"][0]["type"] == "http"
    assert source.line_of(("sites", 0, "checks", 0, "type")) == 4
    assert source.line_of(("sites", 0, "checks", 1, "type")) == 6
    assert source.line_of(("sites", 1, "checks", 0, "type")) == 10


def test_dotted_keys() -> None:
    text = """\
[[sites]]
id = "49"
icmp.count = 3
thresholds . rtt_good = "50ms"
"""
    source = SourceMap(text)
    assert tomllib.loads(text)["sites"][0]["icmp"] == {"count": 3}
    assert source.line_of(("sites", 0, "icmp", "count")) == 3
    assert source.line_of(("sites", 0, "icmp")) == 3
    assert source.line_of(("sites", 0, "thresholds", "rtt_good")) == 4


def test_inline_tables_on_one_line() -> None:
    text = """\
[[sites]]
id = "49"
contact = { name = "Nguyễn Văn An", phone = "0235 3812 345" }
labels = {gso = "49",unit_type = "tỉnh"}
"""
    source = SourceMap(text)
    assert source.line_of(("sites", 0, "contact")) == 3
    assert source.line_of(("sites", 0, "contact", "name")) == 3
    assert source.line_of(("sites", 0, "contact", "phone")) == 3
    assert source.line_of(("sites", 0, "labels", "unit_type")) == 4
    # keys of an inline table are recorded under it, not at the table level
    assert ("sites", 0, "phone") not in source.lines
    assert ("sites", 0, "contact", "phone") in source.lines


def test_quoted_keys() -> None:
    text = """\
[profiles."tỉnh lỵ"]
interval = "1m"

[profiles.'xã vùng cao'.icmp]
"count" = 3
'size' = 1200

[[sites]]
labels = { "đơn_vị" = "x" }
"""
    source = SourceMap(text)
    parsed = tomllib.loads(text)
    assert parsed["profiles"]["xã vùng cao"]["icmp"] == {"count": 3, "size": 1200}
    assert source.line_of(("profiles", "tỉnh lỵ")) == 1
    assert source.line_of(("profiles", "tỉnh lỵ", "interval")) == 2
    assert source.line_of(("profiles", "xã vùng cao", "icmp")) == 4
    assert source.line_of(("profiles", "xã vùng cao", "icmp", "count")) == 5
    assert source.line_of(("profiles", "xã vùng cao", "icmp", "size")) == 6
    assert source.line_of(("sites", 0, "labels", "đơn_vị")) == 9


def test_quoted_key_containing_a_dot_is_one_key() -> None:
    text = """\
[labels]
"a.b" = "x"
"""
    source = SourceMap(text)
    assert source.line_of(("labels", "a.b")) == 2
    assert ("labels", "a", "b") not in source.lines


def test_header_with_comment_and_spaces() -> None:
    text = """\
[[ levels ]]   # tỉnh — provincial hall
id = "province"
[ monitor ]  # with a comment
window = 5
"""
    source = SourceMap(text)
    assert source.line_of(("levels", 0, "id")) == 2
    assert source.line_of(("monitor", "window")) == 4


def test_multi_line_strings_do_not_confuse_it() -> None:
    text = """\
[[sites]]
id = "49"
note = \"\"\"
[[sites]]
id = "not a site"
address = "inside a string"
\"\"\"
address = "127.0.0.1"
other = '''
[monitor]
window = 99
'''
name = "UBND"
"""
    parsed = tomllib.loads(text)
    assert len(parsed["sites"]) == 1  # the TOML really has one site
    source = SourceMap(text)
    assert source.line_of(("sites", 0, "id")) == 2
    assert source.line_of(("sites", 0, "note")) == 3
    assert source.line_of(("sites", 0, "address")) == 8
    assert source.line_of(("sites", 0, "name")) == 13
    assert ("sites", 1) not in source.lines
    assert ("monitor",) not in source.lines
    assert ("monitor", "window") not in source.lines


def test_one_line_triple_quoted_string_does_not_open_a_block() -> None:
    text = """\
[[sites]]
note = \"\"\"one line\"\"\"
raw = '''also one line'''
address = "127.0.0.1"
"""
    source = SourceMap(text)
    assert source.line_of(("sites", 0, "raw")) == 3
    assert source.line_of(("sites", 0, "address")) == 4


def test_comments_and_blank_lines_are_ignored() -> None:
    text = """\
# [[sites]]
# id = "commented out"

[[sites]]
  # address = "nope"
id = "49"
"""
    source = SourceMap(text)
    assert source.line_of(("sites", 0)) == 4
    assert source.line_of(("sites", 0, "id")) == 6
    assert ("sites", 0, "address") not in source.lines
    assert ("sites", 1) not in source.lines


def test_first_occurrence_wins() -> None:
    # (duplicate keys are a TOML error anyway; the map must not move to the later line)
    source = SourceMap("a = 1\na = 2\n")
    assert source.line_of(("a",)) == 1


def test_fallback_to_nearest_ancestor() -> None:
    text = """\
[[sites]]
id = "49"

[[sites]]
id = "502"
[sites.icmp]
count = 3
"""
    source = SourceMap(text)
    # a missing key points at its site's header
    assert source.line_of(("sites", 1, "address")) == 4
    # a missing key under a sub-table points at that sub-table
    assert source.line_of(("sites", 1, "icmp", "timeout")) == 6
    # a deeper path (e.g. pydantic's loc inside a value) falls back too
    assert source.line_of(("sites", 0, "id", "extra", 3)) == 2


def test_nothing_matches_gives_line_one() -> None:
    source = SourceMap("\n\n[monitor]\n")
    assert source.line_of(("sites", 0, "id")) == 1
    assert source.line_of(()) == 1


# --------------------------------------------------------------------------- lines as TOML counts


@pytest.mark.parametrize("breaker", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                     "\u2029"])
def test_only_newline_ends_a_line(breaker: str) -> None:
    # str.splitlines() breaks at all of these; TOML does not.
    text = f'a = "x{breaker}y"\n# {breaker}{breaker}\nb = 1\n'
    assert toml_lines(text) == [f'a = "x{breaker}y"', f"# {breaker}{breaker}", "b = 1"]
    assert line_count(text) == 3
    assert SourceMap(text).line_of(("b",)) == 3


def test_line_count_with_and_without_a_final_newline() -> None:
    assert line_count("a = 1\r\nb = 2\r\n") == 2
    assert line_count("a = 1\nb = 2") == 2
    assert line_count("") == line_count("\n") == 1
    assert toml_lines("a = 1\r\n") == ["a = 1"]


@given(st.text(alphabet=st.sampled_from('ab=1"\n\r\x85\u2028\x0c\t ['), max_size=60))
@settings(max_examples=200, deadline=None)
def test_every_recorded_line_exists(text: str) -> None:
    source = SourceMap(text)
    assert all(1 <= line <= line_count(text) for line in source.lines.values())


# --------------------------------------------------------------------------- keys in messages


@pytest.mark.parametrize(
    ("part", "shown"),
    [
        ("rtt_good", "rtt_good"),
        ("unit-type", "unit-type"),
        (3, "[3]"),
        ("loại", '"loại"'),
        ("a b", '"a b"'),
        ("x\ny:1: z", '"x\\ny:1: z"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("\x85\u2028\x00", '"\\u0085\\u2028\\u0000"'),
    ],
)
def test_keys_are_shown_as_toml_writes_them(part: str | int, shown: str) -> None:
    assert toml_key(part) == shown
    if isinstance(part, str) and shown.startswith('"'):
        assert tomllib.loads(f"{shown} = 1") == {part: 1}  # it round-trips


# --------------------------------------------------------------------------- where tomllib gave up


def test_deepest_nesting_skips_strings_and_comments() -> None:
    text = (
        'a = "[[[[[[["  # [[[[[[[[[[\n'
        "b = '{{{{{{{{'\n"
        'c = """\n[[[[[[[[[[\n"""\n'
        "d = '''\n{{{{{{{{{{{{\n'''\n"
        "[table]\n"
        "e = [[1, {f = [2]}], 3]\n"
        "g = [\n  [\n    [[[]]],\n  ],\n]\n"
    )
    tomllib.loads(text)  # (valid TOML)
    assert deepest_nesting(text) == (5, 13)


def test_longest_number_skips_strings_and_counts_digits_only() -> None:
    text = 'a = "' + "1" * 80 + '"\n# ' + "2" * 90 + "\nb = 1_000_000\nc = 12345678\n"
    assert longest_number(text) == (8, 4)
    assert longest_number("x = 1\n") == (1, 1)
