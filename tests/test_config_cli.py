"""`bridgemon -c FILE check-config` on the inputs that used to hang or crash the loader, or
that it passed and `run` then died on: exit 2 and `FILE:LINE: ...`, as for any other error.

Real processes: the exit code and stderr are what systemd's ExecStartPre and a technician
see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SITES = """\
[[levels]]
id = "province"
[[levels]]
id = "cluster"
parents = ["province", "hub"]
[[levels]]
id = "hub"
parents = ["cluster"]

[[sites]]
id = "49"
name = "UBND tỉnh Quảng Nam"
level = "province"
address = "127.49.0.1"

[[sites]]
id = "cum-bac"
name = "Cụm phía Bắc"
level = "cluster"
parent = "49"
address = "127.49.1.1"
"""

EVENT = """
[[events]]
id = "hn-12"
title = "Hội nghị trực tuyến UBND tỉnh"
participants = "under:cum-bac"
"""

CYCLE = SITES.replace('parent = "49"', 'parent = "tram-a"') + """
[[sites]]
id = "tram-a"
name = "Trạm Điện Bàn"
level = "hub"
parent = "cum-bac"
address = "127.49.1.2"
"""


def check_config(tmp_path: Path, text: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path / "sites.toml"
    path.write_text(text, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "STATE_DIRECTORY"}
    # 30 s: a loader that loops (the cycle) fails here instead of hanging the suite
    result = subprocess.run(
        [sys.executable, "-m", "bridgemon", "-c", str(path), "check-config"],
        capture_output=True, text=True, timeout=30, cwd=REPO, env=env,
    )
    return path, result


def line_with(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize(
    ("text", "needle", "message"),
    [
        pytest.param(CYCLE + EVENT + "start = 2026-12-15T08:00:00\n", 'parent = "tram-a"',
                     "sites[1].parent: parent cycle: cum-bac -> tram-a -> cum-bac",
                     id="cycle-with-under"),
        pytest.param(SITES.replace('parent = "49"', 'parent = "cum-bac"') + EVENT
                     + "start = 2026-12-15T08:00:00\n", 'parent = "cum-bac"',
                     "sites[1].parent: a site cannot be its own parent", id="own-parent"),
        pytest.param(SITES + "[monitor]\nwindow = " + "[" * 1000 + "]" * 1000 + "\n",
                     "window =", "TOML nested too deeply (1000 levels", id="nested-1000"),
        pytest.param(SITES + "[monitor]\nwindow = " + "9" * 4301 + "\n", "window =",
                     "a number of 4301 digits is too long (at most 4300)", id="int-4301-digits"),
        pytest.param(SITES + "[monitor]\ninterval = 1" + "0" * 400 + "\n", "interval =",
                     "monitor.interval: bad duration", id="duration-1e400-int"),
        pytest.param(SITES + EVENT + "start = 9999-12-31T23:00:00\n", "start =",
                     "events[0].start: the year 9999 is out of range", id="year-9999"),
        pytest.param(SITES + EVENT + "start = 0001-01-01T00:00:00+14:00\n", "start =",
                     "events[0].start: the year 1 is out of range", id="year-1-plus-14h"),
        pytest.param(SITES + EVENT + "start = 0001-01-01T00:00:00\n", "start =",
                     "events[0].start: the year 1 is out of range", id="year-1-run-died"),
        pytest.param(SITES + EVENT + 'start = 2026-12-15T08:00:00\npretests = ["99999999999d"]\n',
                     "pretests =", "events[0].pretests[0]: bad duration '99999999999d': at most "
                     "366d (a year)", id="pretest-99999999999d-run-died"),
    ],
)
def test_check_config_refuses_with_file_and_line(
    tmp_path: Path, text: str, needle: str, message: str
) -> None:
    path, result = check_config(tmp_path, text)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:{line_with(text, needle)}: {message}"), lines
    assert lines[-1] == f"{path}: 1 error; nothing was started"
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_extreme_valid_event(tmp_path: Path) -> None:
    text = SITES + EVENT + ('start = 2000-01-01T00:00:00+14:00\nduration = "7d"\n'
                            'pretests = ["366d"]\n')
    path, result = check_config(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK — 2 sites") and "1 event" in result.stdout
