"""Test-run reports with STAMP trains and path MTU checks, built by the real code: trains
through tests.test_stamp_analysis's simulated paths, analysed and judged as the sender's
are, and MTU outcomes as the probe returns them, each made a check as a test run does."""

from __future__ import annotations

from typing import Any

from bridgemon.probes.result import ProbeResult
from bridgemon.stamp.check import train_check
from bridgemon.stamp.pmtu import PmtuResult
from bridgemon.stamp.pmtu_check import mtu_check
from bridgemon.stamp.result import Anomalies, TrainResult
from bridgemon.stamp.verdict import judge
from bridgemon.views import check_json
from tests.report_samples import sample_report
from tests.test_stamp_analysis import SPEC, result_of, simulate


def train(result: TrainResult, name: str = "video") -> dict[str, Any]:
    return dict(check_json(train_check(result, judge(result), name=name)))


def clean_train() -> dict[str, Any]:
    return train(result_of(simulate()))


def uplink_loss_train() -> dict[str, Any]:
    """24 of 205 answers lost on the way back: 11.7 % on the uplink."""
    return train(result_of(simulate(up_lost=range(10, 200, 8))))


def stateless_train() -> dict[str, Any]:
    return train(result_of(simulate(stateful=False, down_lost=range(5, 200, 10)),
                           mode="stateless"))


def unanswered_train() -> dict[str, Any]:
    return train(TrainResult(spec=SPEC, address="192.0.2.10", started_at=0.0, elapsed=2.0,
                             planned=204, sent=204, figures=None, anomalies=Anomalies(),
                             pacing=None))


def budget_train() -> dict[str, Any]:
    return train(TrainResult(spec=SPEC, address=None, started_at=0.0, elapsed=0.0,
                             planned=204, sent=0, figures=None, anomalies=Anomalies(),
                             pacing=None, error="no room in the 20 Mbit/s budget",
                             error_vi="hết băng thông dành cho kiểm tra (20 Mbit/s)",
                             error_kind="budget"))


def mtu(outcome: str, *, mtu: int | None = None, largest_ok: int | None = None,
        smallest_lost: int | None = None, reporter: str | None = None) -> dict[str, Any]:
    result = PmtuResult(address="192.0.2.10", size=1472, outcome=outcome,  # type: ignore[arg-type]
                        mtu=mtu, largest_ok=largest_ok, smallest_lost=smallest_lost,
                        reporter=reporter, rtt=0.0021 if outcome == "ok" else None,
                        mode="raw", probes=3)
    check: ProbeResult = mtu_check(result, name="mtu", started_at=0.0, duration=0.4)
    return dict(check_json(check))


def path_report() -> dict[str, Any]:
    """The sample run, its first sites with trains and MTU checks of every kind."""
    report = sample_report()
    sites = report["sites"]
    extra = [
        [clean_train(), mtu("ok")],
        [uplink_loss_train(), mtu("frag_needed", mtu=1400, reporter="192.0.2.1")],
        [stateless_train(), mtu("black_hole", mtu=1400, largest_ok=1400, smallest_lost=1428)],
        [unanswered_train(), mtu("no_reply")],
        [budget_train()],
    ]
    for site, checks in zip(sites, extra, strict=False):
        site["checks"].extend(checks)
    return report
