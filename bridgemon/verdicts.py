"""The verdicts: their names, their two orders and their words, in one place.

Every reader says the same thing of a site: readiness judges in these names, the API,
/metrics, the status page, the history and every report format show them, and the words a
technician reads (Vietnamese, and English for the logs and reports) come from here alone.

Reports are read years later by a newer bridgemon, so the functions taking a name as text
accept names this version does not know: such a verdict counts and sorts as ``unknown``
and is shown as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypedDict


class State(StrEnum):
    """A site's verdict. Declared in the order counts are read out: good news first."""

    READY = "ready"
    DEGRADED = "degraded"
    NOT_READY = "not_ready"
    PARENT_DOWN = "parent_down"
    UNKNOWN = "unknown"


# The order summaries list counts in (a summary line, the report's boxes, the summary
# object's keys): good news first.
STATES: tuple[State, ...] = tuple(State)
NAMES: tuple[str, ...] = tuple(state.value for state in STATES)

# Worst first: the order in which technicians must act, tables list sites, and a site's
# reasons are listed; a site's verdict is its worst reason's.
WORST_FIRST: tuple[State, ...] = (
    State.NOT_READY, State.PARENT_DOWN, State.UNKNOWN, State.DEGRADED, State.READY,
)
RANK: dict[str, int] = {state.value: rank for rank, state in enumerate(WORST_FIRST)}

# The verdicts with which a site can join a conference (degraded: with a warning).
CAN_JOIN: frozenset[State] = frozenset({State.READY, State.DEGRADED})

WORDS_VI: dict[State, str] = {
    State.READY: "Sẵn sàng",
    State.DEGRADED: "Suy giảm",
    State.NOT_READY: "Chưa sẵn sàng",
    State.PARENT_DOWN: "Mất kết nối cấp trên",
    State.UNKNOWN: "Chưa rõ",
}
WORDS_EN: dict[State, str] = {
    State.READY: "ready",
    State.DEGRADED: "degraded",
    State.NOT_READY: "not ready",
    State.PARENT_DOWN: "parent down",
    State.UNKNOWN: "unknown",
}


def known(name: str) -> State:
    """The verdict called ``name``; a name this version does not know is ``unknown``."""
    try:
        return State(name)
    except ValueError:
        return State.UNKNOWN


def rank(name: str) -> int:
    """Position in ``WORST_FIRST``; an unknown name sorts with ``unknown``: visible, but
    after the certain failures."""
    return RANK.get(name, RANK[State.UNKNOWN])


def words_vi(name: str) -> str:
    """The Vietnamese words for a verdict; a name this version does not know, as is."""
    try:
        return WORDS_VI[State(name)]
    except ValueError:
        return name


def can_join(name: str) -> bool:
    return name in CAN_JOIN


class Summary(TypedDict):
    """Sites per verdict, in ``STATES`` order (the API's and the test-run report's
    ``summary``; docs/testrun.schema.json, ``$defs/summary``)."""

    total: int
    ready: int
    degraded: int
    not_ready: int
    parent_down: int
    unknown: int


def count(names: Iterable[str]) -> Summary:
    """The summary of these verdicts; names this version does not know count as unknown."""
    return add_up((name, 1) for name in names)


def add_up(counted: Iterable[tuple[str, int]]) -> Summary:
    """``count`` of (name, how many) pairs, as a database's GROUP BY gives them."""
    counts = dict.fromkeys(NAMES, 0)
    for name, number in counted:
        counts[name if name in counts else State.UNKNOWN.value] += number
    return summary(sum(counts.values()), counts)


def in_order(summary: Summary) -> tuple[tuple[State, int], ...]:
    """A summary's counts in ``STATES`` order, each with its verdict."""
    return ((State.READY, summary["ready"]), (State.DEGRADED, summary["degraded"]),
            (State.NOT_READY, summary["not_ready"]), (State.PARENT_DOWN, summary["parent_down"]),
            (State.UNKNOWN, summary["unknown"]))


def summary(total: int, counts: Mapping[str, object]) -> Summary:
    """A Summary of ``total`` sites from counts by name (a stored summary, say); a name
    missing counts 0."""
    def number(name: str) -> int:
        value = counts.get(name, 0)
        return int(value) if isinstance(value, int | float | str) else 0

    return Summary(total=total, ready=number("ready"), degraded=number("degraded"),
                   not_ready=number("not_ready"), parent_down=number("parent_down"),
                   unknown=number("unknown"))
