"""A train as a check (``type = "stamp"`` in a profile, ``probes/dispatch.py``'s row for
:class:`StampSpec`): :class:`TrainResult` + its :class:`StampVerdict` → the
:class:`ProbeResult` every other check returns, so ``bridgemon probe``, the test-run
report and readiness read a train as they read a SIP or HTTPS check.

How the verdict maps (readiness's rule for checks: a failed required check makes the
site not ready, a passed one with a reason makes it degraded): ready → passed, no
reason; degraded → passed, the degradations as its reason; not ready or unknown (no
answer, a budget with no room) → failed. ``details`` carry the train's figures
(:meth:`TrainResult.to_dict`), the state, and every reason and note in both languages.
"""

from __future__ import annotations

from bridgemon.probes import ProbeContext
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import StampSpec
from bridgemon.stamp.result import TrainResult
from bridgemon.stamp.sender import run_train
from bridgemon.stamp.train import TrainSpec
from bridgemon.stamp.verdict import StampVerdict, judge
from bridgemon.verdicts import CAN_JOIN

KIND = "stamp"


def train_check(result: TrainResult, verdict: StampVerdict, *, name: str = KIND) -> ProbeResult:
    reasons = verdict.reasons
    return ProbeResult(
        check=name,
        kind=KIND,
        target=result.spec.target,
        ok=verdict.state in CAN_JOIN,
        started_at=result.started_at,
        duration=result.elapsed,
        reason="; ".join(reason.en for reason in reasons) or None,
        details={
            **result.to_dict(),
            "state": verdict.state.value,
            "reason_vi": "; ".join(reason.vi for reason in reasons) or None,
            "reasons": [reason.to_dict() for reason in reasons],
            "notes": [note.to_dict() for note in verdict.notes],
        },
    )


async def probe(target: str, spec: StampSpec, ctx: ProbeContext) -> ProbeResult:
    """The check's train to the reflector at ``target``, within the process's budget."""
    train = TrainSpec(host=target, port=spec.port, rate_bps=spec.rate_bps, size=spec.size,
                      duration=spec.duration, dscp=spec.dscp, reflector=spec.reflector,
                      wait=spec.wait)
    result = await run_train(train, budget=ctx.trains)
    return train_check(result, judge(result, spec.thresholds), name=spec.name)
