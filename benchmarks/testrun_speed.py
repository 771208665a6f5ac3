"""How long a pre-event test run takes: the shipped 260 sites and a national-scale inventory.

    sudo .venv/bin/python benchmarks/testrun_speed.py            # 260 and 12,000 sites
    sudo .venv/bin/python benchmarks/testrun_speed.py --sites 260 --repeats 5

Each run is the real command, `bridgemon test --count 50 --format json`, with history on,
on loopback targets. Reports the median wall time of the repeats and the CPU it used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inventory import national_inventory

REPO = Path(__file__).resolve().parent.parent


def one_run(config: Path, count: int, state: Path) -> tuple[float, float, dict[str, int]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bridgemon", "-c", str(config), "test", "--count", str(count),
         "--format", "json"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(state)},
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(result.stdout)["summary"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, action="append",
                        help="synthetic inventory sizes (default: 260 shipped + 12000)")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = args.sites or [260, 12000]
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            if size == 260:
                config, label = REPO / "config" / "sites.toml", "260 shipped sites"
            else:
                config = Path(tmp) / f"national-{size}.toml"
                config.write_text(national_inventory(size, port=1), encoding="utf-8")
                label = f"{size} synthetic sites"
            runs = [one_run(config, args.count, Path(tmp) / "state")
                    for _ in range(args.repeats)]
            walls = [wall for wall, _, _ in runs]
            cpus = [cpu for _, cpu, _ in runs]
            print(f"{label} × {args.count} echoes: wall median {statistics.median(walls):.1f} s "
                  f"(runs {', '.join(f'{w:.1f}' for w in walls)}), CPU median "
                  f"{statistics.median(cpus):.1f} s; last summary {runs[-1][2]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
