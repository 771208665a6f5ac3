"""The test-run report, typed: TypedDicts mirroring docs/testrun.schema.json (hence the
name).

The report is a contract (``bridgemon test --format json``, ``GET /api/v1/test-runs/{id}``,
the history store, every report format), so what produces it and what reads it are checked
against these types by ``mypy --strict``. They follow the JSON schema field for field:
what the schema requires is required here, what it leaves out may be missing (``.get``),
so a reader also handles the runs stored by older versions.

Two things stay open, as in the schema: each probe adds fields of its own to a check
(``status_code``, ``transport``, ``cert_not_after``, ...), which readers take with
``.get``; and a verdict is a ``str``, since a report stored by a newer bridgemon may name
one this version does not know (``bridgemon.verdicts`` says how such a name is shown).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from bridgemon.verdicts import Summary

Status = Literal["running", "complete", "incomplete"]
Trigger = Literal["cli", "schedule", "api"]
STATUSES: tuple[Status, ...] = ("running", "complete", "incomplete")
TRIGGERS: tuple[Trigger, ...] = ("cli", "schedule", "api")


class RttMs(TypedDict):
    """Round-trip times in ms over a burst; None when nothing came back."""

    min: float | None
    avg: float | None
    max: float | None
    p95: float | None


class StampDirection(TypedDict):
    """One direction of a train (``$defs/stamp_direction``); loss figures are None where
    the reflector cannot tell them (a stateless one)."""

    expected: NotRequired[int | None]
    lost: NotRequired[int | None]
    loss_ratio: float | None
    jitter_ms: float | None  # RFC 3550 interarrival jitter
    reordered: int
    duplicates: int
    carried_bps: float | None  # the rate that got through, on the wire
    offered_bps: NotRequired[float | None]  # the rate that entered the direction
    mos: NotRequired[float | None]


class StampRoundTrip(TypedDict):
    """The train over the round trip (``$defs/stamp_round_trip``)."""

    sent: int
    received: int
    lost: int
    loss_ratio: float
    rtt_ms: RttMs | None
    jitter_ms: float | None
    reordered: int
    duplicates: int
    mos: float


class StampReasonReport(TypedDict):
    """A reason or note of a train's verdict, in both languages (``$defs/stamp_reason``)."""

    code: str  # stamp_loss, stamp_rate, stamp_jitter, stamp_rtt, stamp_mos, ...
    severity: str  # a verdict, or "info" for a note
    en: str
    vi: str
    direction: str | None  # downlink, uplink, round_trip


class CheckReport(TypedDict):
    """One probe of a site (``$defs/check``); the ICMP fields are ``$defs/icmp``'s."""

    type: str  # icmp, tcp, h323, http, https, sip, ...
    name: NotRequired[str]
    target: str
    ok: bool
    reason: NotRequired[str | None]  # why it failed, or a warning when it passed
    duration_ms: NotRequired[float | None]
    # ICMP only: the path figures of the burst.
    sent: NotRequired[int]
    received: NotRequired[int]
    loss_ratio: NotRequired[float | None]
    rtt_ms: NotRequired[RttMs]
    rtts_ms: NotRequired[list[float | None]]  # every echo's RTT in order sent, None: lost
    jitter_ms: NotRequired[float | None]
    # stamp and mtu: the check's own verdict and the Vietnamese words of its reason.
    state: NotRequired[str]
    reason_vi: NotRequired[str | None]
    size: NotRequired[int]  # stamp: UDP payload octets; mtu: ICMP payload octets
    # stamp only ($defs/stamp): the train sent and its figures.
    rate_bps: NotRequired[int]
    duration_s: NotRequired[float]
    dscp: NotRequired[str]
    planned: NotRequired[int]
    reflector_mode: NotRequired[str]  # stateful, stateless, inconsistent, unknown
    round_trip: NotRequired[StampRoundTrip]
    downlink: NotRequired[StampDirection]
    uplink: NotRequired[StampDirection]
    mos: NotRequired[float]  # the worse direction's video score (ITU-T G.1070)
    reasons: NotRequired[list[StampReasonReport]]
    notes: NotRequired[list[StampReasonReport]]
    # mtu only ($defs/mtu): what the path did with full-size packets with DF set.
    outcome: NotRequired[str]  # ok, frag_needed, black_hole, local_mtu, no_reply
    packet_size: NotRequired[int]  # IP octets: size + 28
    mtu: NotRequired[int | None]  # reported (frag_needed, local_mtu) or bracketed
    largest_ok: NotRequired[int | None]
    smallest_lost: NotRequired[int | None]
    reporter: NotRequired[str | None]  # the router that said "fragmentation needed"
    echo_rtt_ms: NotRequired[float | None]


class Contact(TypedDict):
    """The site's technician (``$defs/contact``)."""

    name: str | None
    phone: str | None
    email: NotRequired[str | None]


class SiteReport(TypedDict):
    """One tested site and its verdict (``$defs/site``)."""

    id: str
    name: str
    level: str
    parent: str | None
    parent_name: NotRequired[str | None]
    address: NotRequired[str | None]
    verdict: str
    reasons: list[str]  # English, worst first
    reasons_vi: NotRequired[list[str]]
    mos: float | None
    contact: NotRequired[Contact | None]
    checks: list[CheckReport]


class ReportHeader(TypedDict):
    """The report without its sites: what the history stores when a run begins."""

    run_id: str
    started_at: str
    finished_at: str | None  # None while running, and for a run cut short
    status: Status
    event: str | None
    event_title: NotRequired[str | None]
    event_start: NotRequired[str | None]
    selector: NotRequired[str | None]
    trigger: NotRequired[Trigger]
    operator: NotRequired[str | None]
    count: NotRequired[int]
    spacing_ms: NotRequired[float]
    summary: Summary | None  # None before the end; readers then count the sites


class Report(ReportHeader):
    """The whole report (the schema's top level)."""

    sites: list[SiteReport]


class RunListing(ReportHeader):
    """A run as the history lists it: its header and how many site results are stored."""

    sites_stored: int
