"""``bridgemon history`` and ``bridgemon report`` over stored runs: ids shown whole and
taken by a unique beginning, data printed as written, the history file named, and stored
runs still readable while the inventory does not load. No probing: the runs are stored
through History, as the daemon and ``bridgemon test`` store them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridgemon.config import load_config
from bridgemon.testrun.history import History
from tests.report_samples import REPO, sample_report

GOOD = '[[sites]]\nid = "49"\nname = "UBND tỉnh"\nlevel = "province"\naddress = "127.0.0.1"\n'
BROKEN = GOOD + 'interval = "soon"\n'  # a site key the loader refuses


def bridgemon(*args: str, columns: int = 120, cwd: Path = REPO,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("STATE_DIRECTORY", "BRIDGEMON_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "bridgemon", *args], capture_output=True, text=True,
        timeout=60, cwd=cwd, env={**clean, "COLUMNS": str(columns), **(env or {}),
                                  "PYTHONPATH": str(REPO)},
    )


def store(state_dir: Path, run_id: str, **changes: Any) -> dict[str, Any]:
    report = {**sample_report(), "run_id": run_id, **changes}
    with History(state_dir / "bridgemon.db") as history:
        history.begin({key: value for key, value in report.items() if key != "sites"})
        for site in report["sites"]:
            history.add_site(run_id, site)
        history.finish(run_id, report["finished_at"], report["summary"])
    return report


def config(path: Path, state_dir: Path | str | None, body: str = GOOD) -> Path:
    monitor = "" if state_dir is None else f'[monitor]\nstate_dir = "{state_dir}"\n'
    path.write_text(monitor + body, encoding="utf-8")
    return path


RUN_IDS = ("20261127T173128-a358", "20261127T173140-0c1e", "20261128T080000-77aa")


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, state directory) with three stored runs."""
    state = tmp_path / "trạng thái" / "state"
    for run_id in RUN_IDS:
        store(state, run_id)
    return config(tmp_path / "sites.toml", state), state


@pytest.mark.parametrize("columns", [80, 120])
def test_history_shows_every_run_id_whole(runs: tuple[Path, Path], columns: int) -> None:
    path, _ = runs
    result = bridgemon("-c", str(path), "history", columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for run_id in RUN_IDS:
        assert any(run_id in line for line in lines), (run_id, result.stdout)


def test_history_ends_with_the_file_the_runs_are_in(runs: tuple[Path, Path]) -> None:
    path, state = runs
    result = bridgemon("-c", str(path), "history", columns=80)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"Lưu tại (stored in): {state / 'bridgemon.db'}"


def test_history_prints_markup_in_the_data_as_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store(state, RUN_IDS[0], operator="kỹ thuật [/] viên", selector="[bold]under:502")
    result = bridgemon("-c", str(config(tmp_path / "sites.toml", state)), "history",
                       columns=200)
    assert result.returncode == 0, result.stderr
    assert "kỹ thuật [/] viên" in result.stdout and "[bold]under:502" in result.stdout


def test_report_takes_the_id_or_any_unique_beginning_of_it(runs: tuple[Path, Path]) -> None:
    path, _ = runs
    whole = bridgemon("-c", str(path), "report", RUN_IDS[0], "--format", "json")
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["run_id"] == RUN_IDS[0]
    for prefix, run_id in (("20261127T17312", RUN_IDS[0]), ("20261128", RUN_IDS[2])):
        result = bridgemon("-c", str(path), "report", prefix, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == json.loads(
            bridgemon("-c", str(path), "report", run_id, "--format", "json").stdout)
    ambiguous = bridgemon("-c", str(path), "report", "20261127")
    assert ambiguous.returncode == 2 and ambiguous.stdout == ""
    assert "ambiguous" in ambiguous.stderr
    assert RUN_IDS[0] in ambiguous.stderr and RUN_IDS[1] in ambiguous.stderr
    for unknown in ("2025", "20261127T173128-a358x", "%", "_"):
        result = bridgemon("-c", str(path), "report", unknown)
        assert result.returncode == 2 and "no test run" in result.stderr, unknown


def test_history_ids_starting_with_compares_as_written(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as history:
        for run_id in ("a_b-1", "a%b-2", "axb-3"):
            history.begin({"run_id": run_id, "started_at": "2026-11-27T17:15:00+07:00"})
        assert history.ids_starting_with("a_") == ["a_b-1"]  # not LIKE's any-character
        assert history.ids_starting_with("a%") == ["a%b-2"]
        assert history.ids_starting_with("a", limit=2) == ["axb-3", "a_b-1"]
        assert history.ids_starting_with("") == []


def test_history_and_report_work_while_the_inventory_does_not_load(
    runs: tuple[Path, Path],
) -> None:
    path, state = runs
    config(path, state, BROKEN)
    assert bridgemon("-c", str(path), "check-config").returncode == 2
    listed = bridgemon("-c", str(path), "history", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert {run["run_id"] for run in json.loads(listed.stdout)} == set(RUN_IDS)
    assert f"{path}:8: sites[0].interval: unknown key" in listed.stderr  # why it is not loaded
    assert (f"stored runs are read from {state / 'bridgemon.db'} "
            "(the [monitor] state_dir of that file)") in listed.stderr
    report = bridgemon("-c", str(path), "report", RUN_IDS[2], "--format", "csv")
    assert report.returncode == 0, report.stderr
    assert RUN_IDS[2] in report.stdout


def test_without_a_loadable_state_dir_the_default_is_read_and_named(tmp_path: Path) -> None:
    # A TOML syntax error: not even [monitor] can be read. The default then, which
    # $STATE_DIRECTORY (systemd's) sets.
    state = tmp_path / "systemd-state"
    store(state, RUN_IDS[0])
    path = tmp_path / "sites.toml"
    path.write_text("[[sites]\n", encoding="utf-8")
    result = bridgemon("-c", str(path), "report", RUN_IDS[0], "--format", "json",
                       env={"STATE_DIRECTORY": str(state)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == RUN_IDS[0]
    assert "(the default state directory)" in result.stderr
    assert f"{path}:1: TOML syntax" in result.stderr
    # No config file at all: the same.
    gone = bridgemon("-c", str(tmp_path / "gone.toml"), "history", "--format", "json",
                     env={"STATE_DIRECTORY": str(state)})
    assert gone.returncode == 0 and json.loads(gone.stdout)[0]["run_id"] == RUN_IDS[0]
    assert "no such file" in gone.stderr


@pytest.mark.parametrize("written", [None, "state", "../kho/lịch sử", "/ABS", 'a"b\\c'])
@pytest.mark.parametrize("from_environment", [False, True])
def test_the_fallback_finds_the_state_dir_the_loader_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str | None,
    from_environment: bool,
) -> None:
    """`report` on a broken file reads where `test` on the repaired file stores, whatever
    the working directory, $STATE_DIRECTORY and the value written."""
    from bridgemon.cli_testrun import fallback_state_dir, stored_runs_dir

    if written == "/ABS":
        written = str(tmp_path / "absolute")
    if from_environment:
        monkeypatch.setenv("STATE_DIRECTORY", "env-state")
    else:
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    directory = tmp_path / "etc"
    directory.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    value = None if written is None else written.replace("\\", "\\\\").replace('"', '\\"')
    good = config(directory / "good.toml", value)
    broken = config(directory / "broken.toml", value, BROKEN)
    expected = load_config(good).monitor.state_dir
    found, source = fallback_state_dir(broken)
    assert found == expected
    assert stored_runs_dir(broken) == expected == stored_runs_dir(good)
    assert source == ("the default state directory" if written is None
                      else "the [monitor] state_dir of that file")
