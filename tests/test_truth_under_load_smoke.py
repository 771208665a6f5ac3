"""Short runs of benchmarks/truth_under_load.py (300 loopback sites every 10 s, a real
Prometheus scraping, the API polled, fping as the CPU reference in its own namespace)
and of benchmarks/engine_alone.py (200 targets).

They check that the benchmarks still run end to end and that what they measure holds at
this size (no healthy site judged anything else, no answered echo counted lost, the CPU
figures of both sides present); never a timing figure, which belongs to the full runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_root

pytestmark = [
    needs_root,
    pytest.mark.skipif(shutil.which("fping") is None or shutil.which("prometheus") is None,
                       reason="fping and prometheus missing (.ci/run installs them)"),
]


def test_a_short_national_load_run(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/truth_under_load.py", "--only", "load", "--sites", "300",
         "--interval", "10", "--duration", "20", "--repeats", "1", "--poll", "10",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = json.loads(out.read_text(encoding="utf-8"))["load"]["repeats"][0]
    assert row["sites"] == 300 and row["prom_sites_seen"] == 300, row
    assert row["any_non_ready"] == 0 and row["api_non_ready"] == 0, row
    assert row["daemon_echoes"] > 0 and row["false_losses"] == 0, row
    assert row["fping_echoes"] > 0 and row["fping_received"] == row["fping_echoes"], row
    assert row["daemon_cpu_s"] > 0 and row["fping_cpu_s"] > 0
    assert 0 <= row["daemon_cpu_system_s"] <= row["daemon_cpu_s"]
    assert 0 <= row["fping_cpu_system_s"] <= row["fping_cpu_s"]
    assert row["cpu_ratio"] is not None
    assert "CPU ratio daemon" in done.stdout and "in the kernel: daemon" in done.stdout


def test_a_short_engine_alone_run() -> None:
    """benchmarks/engine_alone.py, 200 targets: both sides answered in full, both figures."""
    done = subprocess.run(
        [sys.executable, "benchmarks/engine_alone.py", "--sites", "200", "--rounds", "1",
         "--interval", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fping   1000/1000 echoes answered" in done.stdout, done.stdout
    assert "engine  1000/1000 echoes answered" in done.stdout, done.stdout
    assert "engine ÷ fping: " in done.stdout
