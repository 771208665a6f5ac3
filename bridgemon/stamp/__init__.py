"""STAMP (RFC 8762): video-grade path tests with packet trains, a reflector, path MTU.

Ping proves that a site answers; a train at the conference's bitrate proves that its line
carries the conference. The API the rest of bridgemon wires in:

* :func:`parse_stamp_url` — ``stamp://HOST[:PORT]?rate=2M&size=1200&duration=5s&dscp=AF41``
  → :class:`TrainSpec` (or build a :class:`TrainSpec` from a profile directly);
* ``await`` :func:`run_train` ``(spec, budget=...)`` → :class:`TrainResult` (plain data,
  ``to_dict()`` for JSON); a :class:`BandwidthBudget` is shared by a whole test run;
* :func:`judge` ``(result, StampThresholds(...))`` → :class:`StampVerdict` with reasons in
  English and Vietnamese (state values are those of ``bridgemon.readiness.State``);
* ``await`` :func:`serve` ``(listen, allow=..., limits=...)`` — the reflector; :func:`main`
  is its command line (``bridgemon reflect``);
* ``await`` :func:`probe_pmtu` ``(address, size=1472)`` → :class:`PmtuResult`.

Module map: ``packets`` (wire formats, timestamps), ``units`` (rates, DSCP), ``train``
(what a train is, its bounds), ``url``, ``budget``, ``sender`` (pacing, sockets),
``analysis`` (figures, pure), ``video_mos`` (G.1070), ``verdict`` (thresholds → reasons),
``result``, ``reflector``, ``pmtu``, ``clock`` (the error estimate), ``sockopts``.
"""

from bridgemon.stamp.analysis import DirectionStats, PathFigures, RoundTripStats, RttSummary
from bridgemon.stamp.budget import BandwidthBudget, BudgetError
from bridgemon.stamp.pmtu import PmtuError, PmtuResult, probe_pmtu
from bridgemon.stamp.reflector import Reflector, ReflectorLimits, main, serve
from bridgemon.stamp.result import Anomalies, Pacing, TrainResult
from bridgemon.stamp.sender import run_train
from bridgemon.stamp.train import StampThresholds, TrainSpec
from bridgemon.stamp.url import parse_stamp_url
from bridgemon.stamp.verdict import StampReason, StampVerdict, judge

__all__ = [
    "Anomalies",
    "BandwidthBudget",
    "BudgetError",
    "DirectionStats",
    "Pacing",
    "PathFigures",
    "PmtuError",
    "PmtuResult",
    "Reflector",
    "ReflectorLimits",
    "RoundTripStats",
    "RttSummary",
    "StampReason",
    "StampThresholds",
    "StampVerdict",
    "TrainResult",
    "TrainSpec",
    "judge",
    "main",
    "parse_stamp_url",
    "probe_pmtu",
    "run_train",
    "serve",
]
