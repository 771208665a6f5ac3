"""Durations as written in the inventory: parse_duration, format_duration and the Duration
field type every model uses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from bridgemon.durations import MAX_DURATION, Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("1.5s", 1.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1h 30m", 5400.0),
        ("1m 30s 500ms", 90.5),
        ("  45s  ", 45.0),
        ("10 s", 10.0),
        ("1H", 3600.0),
        ("250MS", 0.25),
        ("0s", 0.0),
        ("30", 30.0),
        ("0.2", 0.2),
    ],
)
def test_parse_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (0, 0.0), (0.2, 0.2), (1.5, 1.5)])
def test_parse_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == seconds


def test_milliseconds_are_not_minutes() -> None:
    # "ms" must win over "m" followed by a stray "s".
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("5m") == 300.0


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_rejected(value: bool) -> None:
    with pytest.raises(ValueError, match="not a boolean") as info:
        parse_duration(value)
    assert "200ms" in str(info.value)  # says what to write instead


@pytest.mark.parametrize(
    "text",
    ["3 parsecs", "abc", "5x", "1s2", "1h junk", "junk 1h", "1.5.5s", "ms", "s", "1s-", "--1s"],
)
def test_garbage_strings_are_rejected_with_help(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message  # names the bad value
    assert "ms, s, m, h" in message  # says which units exist
    assert '"1m30s"' in message  # and gives an example


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_string_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="empty duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.5, "-5", "-0.1"])
def test_negative_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="non-negative") as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["inf", "Infinity", "-inf", "nan", float("inf"), float("nan")])
def test_non_finite_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize("value", [None, [1], {"s": 1}, b"30s"])
def test_other_types_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="a duration must be a string") as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "200ms"),
        (0.0015, "1.5ms"),
        (0, "0ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (90.5, "90.5s"),  # fractional seconds past a minute stay in seconds
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_whole_seconds_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=999))
def test_whole_milliseconds_round_trip(millis: int) -> None:
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)


# --------------------------------------------------------------------------- bounded to a year


def test_the_longest_duration_is_a_year() -> None:
    assert MAX_DURATION == 366 * 86400
    assert parse_duration("366d") == parse_duration(366 * 86400) == MAX_DURATION
    assert parse_duration("365d 23h 59m 59s 999ms") < MAX_DURATION


@pytest.mark.parametrize(
    "value",
    ["367d", "366d1ms", "99999999999d", "9" * 400 + "s", 366 * 86400 + 1, 1e300,
     pytest.param(10**400, id="10**400"), pytest.param(10**5000, id="10**5000")],
)
def test_longer_than_a_year_is_rejected(value: object) -> None:
    # 10**400 used to escape as OverflowError (int too large to convert to float), and
    # "99999999999d" was accepted, then overflowed timedelta in the running daemon.
    with pytest.raises(ValueError, match=r"at most 366d \(a year\)|finite") as info:
        parse_duration(value)
    assert len(str(info.value)) < 120  # a 5000-digit number is not printed whole


@pytest.mark.parametrize("value", [pytest.param(-(10**400), id="-10**400"), -1, "-86400"])
def test_huge_negative_numbers_are_negative(value: object) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        parse_duration(value)


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=30)))
@settings(max_examples=300, deadline=None)
def test_any_value_is_a_bounded_duration_or_a_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert 0 <= seconds <= MAX_DURATION


class _Timed(BaseModel):
    every: Duration = Field(default=30.0, ge=1, le=60)
    offsets: list[Duration] = []


def test_a_duration_field_reads_what_parse_duration_reads_and_holds_seconds() -> None:
    timed = _Timed.model_validate({"every": "1m", "offsets": ["1h30m", 5, "200ms"]})
    assert timed.every == 60.0
    assert timed.offsets == [5400.0, 5.0, pytest.approx(0.2)]
    assert _Timed().every == 30.0  # a default is seconds already


@pytest.mark.parametrize(("value", "message"), [
    ("1m1s", "less than or equal to 60"),  # bounds apply to the seconds, not to the text
    ("500ms", "greater than or equal to 1"),
    ("soon", "bad duration 'soon'"),  # parse_duration's own words, not pydantic's
    (True, "a duration, not a boolean"),
])
def test_a_duration_field_refuses_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _Timed.model_validate({"every": value})
