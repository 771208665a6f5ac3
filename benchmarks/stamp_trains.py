"""The cost of STAMP trains: 260 concurrent 2 Mbit/s × 10 s trains to local reflectors.

    .venv/bin/python benchmarks/stamp_trains.py                  # stages 1 … 260 trains
    .venv/bin/python benchmarks/stamp_trains.py --stages 260 --duration 10

Everything goes to loopback (reflectors on 127.0.2.x, one process each, pinned to the
second core when there is one); the sender runs in this process, in one event loop pinned
to the first core, as it would in `bridgemon test`. For each stage of N concurrent trains
(sharing one bandwidth budget sized for them) it reports:

* the sender's CPU per packet (user + system time of this process over the stage, per
  packet sent and answered: sending, receiving, matching, and the analysis at the end);
* the send-time error (actual − scheduled) as each train's p99, summarised over the
  trains (median and worst), against the goal of p99 < 1 ms;
* loss seen and the reflectors' CPU per packet;
* how many concurrent 2 Mbit/s trains one core carries: 1 / (CPU per packet × packets
  per second of a train), and the largest stage that kept the pace.

Bounded: at most 260 trains, each at most 60 s; reflectors stop with the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridgemon.stamp import BandwidthBudget, TrainSpec, run_train

REPO = Path(__file__).resolve().parent.parent
PORT = 18620
MAX_TRAINS = 260


def cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_reflectors(count: int, core: int | None) -> list[subprocess.Popen[str]]:
    procs: list[subprocess.Popen[str]] = []
    for i in range(count):
        argv = [sys.executable, "-m", "bridgemon.stamp.reflector",
                "--listen", f"127.0.2.{i + 1}:{PORT}", "--allow", "127.0.0.0/8",
                "--max-sessions", "1024", "--max-sessions-per-source", "1024",
                "--max-rate", "5G", "--max-pps", "1000000",
                "--ready"]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"reflector {i} did not start: {line!r}")
        if core is not None:
            os.sched_setaffinity(proc.pid, {core})
        procs.append(proc)
    return procs


async def stage(trains: int, duration: float, reflectors: int) -> dict[str, Any]:
    specs = [TrainSpec(f"127.0.2.{i % reflectors + 1}", PORT, rate_bps=2e6, size=1200,
                       duration=duration, wait=1.0) for i in range(trains)]  # fmt: skip
    budget = BandwidthBudget(trains * 2e6)
    cpu0, wall0 = cpu_seconds_self(), time.monotonic()
    results = await asyncio.gather(*(run_train(s, budget=budget, budget_wait=5) for s in specs))
    cpu, wall = cpu_seconds_self() - cpu0, time.monotonic() - wall0
    sent = sum(r.sent for r in results)
    answered = sum(r.answered for r in results)
    p99s = [r.pacing.error_p99 for r in results if r.pacing is not None]
    p50s = [r.pacing.error_p50 for r in results if r.pacing is not None]
    rates = [r.pacing.sent_bps for r in results if r.pacing and r.pacing.sent_bps]
    errors = [r.error for r in results if r.error]
    return {
        "trains": trains,
        "duration_s": duration,
        "wall_s": round(wall, 2),
        "packets_sent": sent,
        "answers": answered,
        "loss_ratio": round(1 - answered / sent, 5) if sent else None,
        "sender_cpu_s": round(cpu, 3),
        "sender_cpu_us_per_packet": round(cpu / sent * 1e6, 1) if sent else None,
        "sender_core_share": round(cpu / wall, 3),
        "send_error_p50_ms_median": round(statistics.median(p50s) * 1000, 3) if p50s else None,
        "send_error_p99_ms_median": round(statistics.median(p99s) * 1000, 3) if p99s else None,
        "send_error_p99_ms_worst": round(max(p99s) * 1000, 3) if p99s else None,
        "offered_bps_median": round(statistics.median(rates)) if rates else None,
        "errors": errors[:3],
        "budget_peak_bps": budget.peak_bps,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    sender_core = cores[0]
    reflector_core = cores[1] if len(cores) > 1 else None
    os.sched_setaffinity(0, {sender_core})
    procs = start_reflectors(args.reflectors, reflector_core)
    try:
        stages: list[dict[str, Any]] = []
        for trains in args.stages:
            duration = args.duration if trains == max(args.stages) else args.short
            before = sum(cpu_seconds_of(p.pid) for p in procs)
            row = await stage(min(trains, MAX_TRAINS), duration, args.reflectors)
            reflector_cpu = sum(cpu_seconds_of(p.pid) for p in procs) - before
            row["reflector_cpu_us_per_packet"] = (
                round(reflector_cpu / row["packets_sent"] * 1e6, 1) if row["packets_sent"]
                else None
            )  # fmt: skip
            stages.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    pps = 2e6 / (1228 * 8)
    # Two answers to "how many trains does one core carry": the largest stage whose
    # trains kept their pace (p99 < 1 ms, no loss), and the CPU-bound ceiling from the
    # per-packet cost of the busiest stage (where fixed per-wake-up costs are spread).
    paced = [s for s in stages if s["send_error_p99_ms_median"] is not None
             and s["send_error_p99_ms_median"] < 1.0 and (s["loss_ratio"] or 0) < 0.001]
    busiest = max(stages, key=lambda s: s["sender_core_share"])
    per_packet = busiest["sender_cpu_us_per_packet"] / 1e6
    return {
        "machine": {"cores": len(cores), "sender_core": sender_core,
                    "reflector_core": reflector_core},
        "train": {"rate_bps": 2e6, "size": 1200, "packets_per_s": round(pps, 1)},
        "stages": stages,
        "largest_stage_keeping_pace": max(s["trains"] for s in paced) if paced else None,
        "cpu_bound_trains_per_core": round(1 / (per_packet * pps)) if per_packet else None,
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 10, 25, 50, 100, 260])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of the largest stage (default 10)")
    parser.add_argument("--short", type=float, default=5.0,
                        help="seconds of the other stages (default 5)")
    parser.add_argument("--reflectors", type=int, default=4)
    args = parser.parse_args()
    if max(args.stages) > MAX_TRAINS or min(args.stages) < 1:
        parser.error(f"stages are 1-{MAX_TRAINS} trains")
    if not (1 <= args.reflectors <= 16 and 0 < args.short <= 60 and 0 < args.duration <= 60):
        parser.error("1-16 reflectors, durations up to 60 s")
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
