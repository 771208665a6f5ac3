"""The JSON figures of sites: rounded cheaply, and printed as the decimals they stand for."""

from __future__ import annotations

import math
import random

from bridgemon.views import rounded


def test_rounded_agrees_with_round_and_prints_as_the_decimal() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        value = rng.uniform(0, 2)
        for places in (3, 4, 6):
            got = rounded(value, 10.0 ** places)
            tie = abs(value * 10.0 ** places % 1 - 0.5) < 1e-6
            assert got == round(value, places) or tie
            assert got == float(f"{got:.{places}f}")  # no 0.30000000000000004 in the JSON
            assert len(repr(got).partition(".")[2]) <= places


def test_rounded_keeps_what_is_not_a_number() -> None:
    assert math.isnan(rounded(math.nan, 1e4))
    assert rounded(math.inf, 1e4) == math.inf
    assert rounded(-math.inf, 1e4) == -math.inf
    assert rounded(0.25, 1e1) == 0.3  # ties round up (round() would say 0.2)
