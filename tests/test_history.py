"""The test-run history: round trips, ordering, owners, migrations, and real processes
killed with SIGKILL while they write."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import bridgemon.testrun.history as history_module
from bridgemon.report import FORMATS, render
from bridgemon.testrun.history import History, HistoryError, encode_site
from tests.report_samples import FINISHED, REPO, header, sample_report, sample_sites

SCHEMA = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bridgemon.db"


@pytest.fixture
def store(db: Path) -> Iterator[History]:
    with History(db) as opened:
        yield opened


def store_run(store: History, report: dict[str, Any]) -> None:
    store.begin({key: value for key, value in report.items() if key != "sites"})
    for site in report["sites"]:
        store.add_site(report["run_id"], site)
    store.finish(report["run_id"], report["finished_at"], report["summary"])


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# --- round trip --------------------------------------------------------------------------


def test_a_run_comes_back_exactly_as_stored(store: History, db: Path) -> None:
    report = sample_report()
    store_run(store, report)
    got = store.get(report["run_id"])
    assert got == report
    assert list(got) == list(report)  # same key order: the JSON output is byte-identical
    assert json.dumps(got, ensure_ascii=False) == json.dumps(report, ensure_ascii=False)
    assert store.get("20991231T000000-none") is None
    assert db.parent.is_dir()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_stored_run_re_renders_identically(store: History) -> None:
    report = sample_report()
    store_run(store, report)
    stored = store.get(report["run_id"])
    assert stored is not None
    for fmt in FORMATS:
        assert render(stored, fmt) == render(report, fmt), fmt


def test_running_run_reads_back_with_counted_summary(store: History) -> None:
    sites = sample_sites()
    store.begin(header())
    for site in sites[:5]:
        store.add_site(header()["run_id"], site)
    got = store.get(header()["run_id"])
    assert got is not None
    assert got["status"] == "running" and got["finished_at"] is None
    assert [site["id"] for site in got["sites"]] == [site["id"] for site in sites[:5]]
    assert got["summary"] == {"total": 5, "ready": 2, "degraded": 1, "not_ready": 2,
                              "parent_down": 0, "unknown": 0}
    assert not list(Draft202012Validator(SCHEMA).iter_errors(got))


def test_finish_counts_the_summary_when_not_given(store: History) -> None:
    report = sample_report()
    store.begin(header())
    for site in report["sites"]:
        store.add_site(report["run_id"], site)
    store.finish(report["run_id"], FINISHED)
    got = store.get(report["run_id"])
    assert got is not None and got["summary"] == report["summary"]
    assert got["status"] == "complete" and got["finished_at"] == FINISHED


def test_list_newest_first_by_event_with_paging(store: History) -> None:
    ids = []
    for day, event in zip(range(1, 6), ["a", "b", "a", None, "a"], strict=True):
        run_id = f"202611{day:02d}T010000-{day:04x}"
        ids.append(run_id)
        report = sample_report(run_id=run_id, event=event)
        store_run(store, report)
    store.begin(header(run_id="20261106T010000-0006", event="a"))
    store.add_site("20261106T010000-0006", sample_sites()[0])
    listed = store.list()
    assert [run["run_id"] for run in listed] == ["20261106T010000-0006", *reversed(ids)]
    assert "sites" not in listed[0]
    assert listed[0]["status"] == "running" and listed[0]["sites_stored"] == 1
    assert listed[0]["summary"]["total"] == 1
    assert listed[1]["summary"] == sample_report()["summary"] and listed[1]["sites_stored"] == 13
    assert [r["run_id"] for r in store.list(event="a")] == \
        ["20261106T010000-0006", ids[4], ids[2], ids[0]]
    assert [r["run_id"] for r in store.list(limit=2)] == ["20261106T010000-0006", ids[4]]
    assert [r["run_id"] for r in store.list(limit=2, before=ids[4])] == [ids[3], ids[2]]
    assert store.list(event="none") == []
    with pytest.raises(ValueError):
        store.list(limit=0)


def test_misuse_is_refused(store: History) -> None:
    run_id = header()["run_id"]
    site = sample_sites()[0]
    with pytest.raises(KeyError):
        store.add_site(run_id, site)
    with pytest.raises(KeyError):
        store.finish(run_id, FINISHED)
    with pytest.raises(KeyError):
        store.abort(run_id)
    with pytest.raises(ValueError, match="run_id"):
        store.begin({"started_at": header()["started_at"]})
    store.begin(header())
    with pytest.raises(ValueError, match="already exists"):
        store.begin(header())
    store.add_site(run_id, site)
    with pytest.raises(ValueError, match="already stored"):
        store.add_site(run_id, site)
    with pytest.raises(ValueError, match="needs an id"):
        store.add_site(run_id, {"name": "no id"})
    store.finish(run_id, FINISHED)
    with pytest.raises(ValueError, match="is complete"):
        store.add_site(run_id, sample_sites()[1])
    with pytest.raises(ValueError, match="is complete"):
        store.finish(run_id, FINISHED)
    store.abort(run_id)  # no longer running: left as it is
    got = store.get(run_id)
    assert got is not None and got["status"] == "complete"


def test_a_batch_of_sites_is_stored_whole_or_not_at_all(store: History) -> None:
    run_id = header()["run_id"]
    first, second, third = (encode_site(site) for site in sample_sites()[:3])
    store.begin(header())
    store.add_sites(run_id, [first, second])
    with pytest.raises(ValueError, match=f"site {second.site_id} already stored"):
        store.add_sites(run_id, [third, second])  # one stored before: none of them
    with pytest.raises(ValueError, match=f"site {third.site_id} already stored"):
        store.add_sites(run_id, [third, third])  # twice in the batch
    with pytest.raises(ValueError, match="needs an id"):
        encode_site({"name": "no id"})  # type: ignore[typeddict-item]
    store.add_sites(run_id, [])
    got = store.get(run_id)
    assert got is not None and [site["id"] for site in got["sites"]] == [first.site_id,
                                                                         second.site_id]
    store.add_sites(run_id, [third])
    store.finish(run_id, FINISHED)
    with pytest.raises(ValueError, match="is complete"):
        store.add_sites(run_id, [encode_site(site) for site in sample_sites()[3:5]])
    got = store.get(run_id)
    assert got is not None and got["sites"] == sample_sites()[:3]
    with pytest.raises(KeyError):
        store.add_sites("20261106T010000-0099", [first])


def test_abort_keeps_the_sites_so_far(store: History) -> None:
    run_id = header()["run_id"]
    store.begin(header())
    store.add_site(run_id, sample_sites()[2])
    store.abort(run_id)
    got = store.get(run_id)
    assert got is not None and got["status"] == "incomplete" and len(got["sites"]) == 1
    assert store.mark_incomplete() == []


JSON_LEAF = (st.none() | st.booleans() | st.integers(-2**53, 2**53)
             | st.floats(allow_nan=False) | st.text(max_size=30))
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
_RUNS = itertools.count()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=60), reasons=st.lists(st.text(max_size=40), max_size=3),
       extra=st.dictionaries(st.text(min_size=1, max_size=10), JSON_VALUE, max_size=4),
       operator=st.text(max_size=30))
def test_any_unicode_round_trips(
    unicode_store: History, name: str, reasons: list[str], extra: dict[str, Any], operator: str,
) -> None:
    run_id = f"20261127T101500-{next(_RUNS):06x}"
    site = {**sample_sites()[0], "name": name, "reasons_vi": reasons}
    site["checks"] = [{**site["checks"][1], **extra}]
    report = sample_report(run_id=run_id, operator=operator)
    report["sites"] = [site, *sample_sites()[1:3]]
    report["summary"] = None
    store_run(unicode_store, report)
    got = unicode_store.get(run_id)
    assert got is not None
    assert got["sites"][0] == site and got["operator"] == operator


@pytest.fixture(scope="module")
def unicode_store() -> Iterator[History]:
    # hypothesis runs many examples in one test call: one store for all of them.
    with tempfile.TemporaryDirectory() as tmp, History(Path(tmp) / "h.db") as opened:
        yield opened


async def test_threads_share_one_store(store: History) -> None:
    """The daemon calls the store through asyncio.to_thread, from several threads at once."""
    run_id = header()["run_id"]
    await asyncio.to_thread(store.begin, header())
    template = sample_sites()[3]
    sites = [{**template, "id": f"{20000 + i}", "name": f"Xã thứ {i}"} for i in range(300)]
    readers = [asyncio.to_thread(store.list) for _ in range(20)]
    await asyncio.gather(*(asyncio.to_thread(store.add_site, run_id, s) for s in sites),
                         *readers)
    await asyncio.to_thread(store.finish, run_id, FINISHED)
    got = await asyncio.to_thread(store.get, run_id)
    assert got is not None and got["summary"]["total"] == 300
    assert sorted(s["id"] for s in got["sites"]) == sorted(s["id"] for s in sites)


# --- owners --------------------------------------------------------------------------


def set_owner(db: Path, run_id: str, **columns: Any) -> None:
    with sqlite3.connect(db) as conn:
        for column, value in columns.items():
            conn.execute(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (value, run_id))


def test_a_run_of_this_live_process_is_not_marked(store: History) -> None:
    store.begin(header())
    assert store.mark_incomplete() == []
    assert store.list()[0]["status"] == "running"


def test_a_recycled_pid_or_an_earlier_boot_does_not_keep_a_run_alive(
    store: History, db: Path,
) -> None:
    for suffix in ("a", "b", "c"):
        store.begin(header(run_id=f"20261127T101500-000{suffix}"))
    # Same pid as this live process, but another process's start time (pid reuse).
    set_owner(db, "20261127T101500-000a", owner_start="1")
    # This very process, but recorded in another boot.
    set_owner(db, "20261127T101500-000b", owner_boot="00000000-0000-0000-0000-000000000000")
    assert store.mark_incomplete() == ["20261127T101500-000a", "20261127T101500-000b"]
    assert {r["run_id"]: r["status"] for r in store.list()} == {
        "20261127T101500-000a": "incomplete", "20261127T101500-000b": "incomplete",
        "20261127T101500-000c": "running"}


# --- migrations ----------------------------------------------------------------------


def test_migration_hook_upgrades_and_keeps_runs(
    db: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = sample_report()
    with History(db) as first:
        assert first.schema_version == 1
        store_run(first, report)

    def add_note(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(history_module, "MIGRATIONS", [*history_module.MIGRATIONS, add_note])
    with History(db) as upgraded:
        assert upgraded.schema_version == 2
        assert upgraded.get(report["run_id"]) == report
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert "note" in columns


def test_a_newer_schema_is_refused(db: Path) -> None:
    History(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(HistoryError, match="newer"):
        History(db)


def test_a_failed_migration_changes_nothing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    History(db).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN half TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(history_module, "MIGRATIONS", [*history_module.MIGRATIONS, broken])
    with pytest.raises(RuntimeError):
        History(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 1
        assert "half" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


# --- real processes ------------------------------------------------------------------

PRELUDE = """
import sys, time
from bridgemon.testrun.history import History
from tests.report_samples import FINISHED, header, sample_report, sample_sites
store = History(sys.argv[1])
"""

BEGIN_ADD_AND_HANG = PRELUDE + """
run_id, k = sys.argv[2], int(sys.argv[3])
store.begin(header(run_id=run_id))
for site in sample_sites()[:k]:
    store.add_site(run_id, site)
print("added", k, flush=True)
time.sleep(120)
"""

WRITE_RUNS = PRELUDE + """
sites = sample_sites()
for n in range(int(sys.argv[2])):
    run_id = f"20261127T{n:06d}-beef"
    store.begin(header(run_id=run_id))
    for site in sites:
        store.add_site(run_id, site)
    store.finish(run_id, FINISHED)
    if n == 2:
        print("three done", flush=True)
"""


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)  # reaped: a zombie would still look like a process


def test_sigkill_midway_loses_nothing_finished(db: Path) -> None:
    earlier = sample_report(run_id="20261126T101500-0001")
    with History(db) as store:
        store_run(store, earlier)
    run_id, k = "20261127T101500-dead", 5
    process = child(BEGIN_ADD_AND_HANG, str(db), run_id, str(k))
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"added {k}"
        with History(db) as store:
            assert store.mark_incomplete() == []  # its owner is alive: not touched
            got = store.get(run_id)
            assert got is not None and got["status"] == "running" and len(got["sites"]) == k
    finally:
        kill(process)
    assert process.returncode == -signal.SIGKILL
    assert integrity(db) == "ok"
    with History(db) as store:
        got = store.get(run_id)
        assert got is not None and got["status"] == "running"
        assert [s["id"] for s in got["sites"]] == [s["id"] for s in sample_sites()[:k]]
        assert store.mark_incomplete() == [run_id]
        assert store.mark_incomplete() == []
        got = store.get(run_id)
        assert got is not None and got["status"] == "incomplete" and got["finished_at"] is None
        assert got["summary"]["total"] == k
        assert not list(Draft202012Validator(SCHEMA).iter_errors(got))
        assert "bị gián đoạn" in render(got, "html")
        assert store.get(earlier["run_id"]) == earlier


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13])
def test_sigkill_while_writing_hard(db: Path, delay: float) -> None:
    """Killed at an arbitrary instant inside a stream of commits: every finished run is
    whole, at most one run is left running, and the file is sound."""
    process = child(WRITE_RUNS, str(db), "100000")
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "three done"
        time.sleep(delay)
    finally:
        kill(process)
    assert integrity(db) == "ok"
    with History(db) as store:
        runs = store.list(limit=None)
        assert len(runs) >= 3
        complete = [run for run in runs if run["status"] == "complete"]
        assert len(runs) - len(complete) <= 1
        for run in complete:
            got = store.get(run["run_id"])
            assert got is not None and got["summary"]["total"] == len(got["sites"]) == 13
            assert got["sites"] == sample_sites()
        assert store.mark_incomplete() == [run["run_id"] for run in runs
                                           if run["status"] == "running"]


def test_readers_read_while_a_writer_writes(db: Path) -> None:
    History(db).close()
    process = child(WRITE_RUNS, str(db), "40")
    reads, seen_running = 0, 0
    try:
        with History(db) as reader:
            deadline = time.monotonic() + 20
            while process.poll() is None and time.monotonic() < deadline:
                for run in reader.list(limit=3):
                    got = reader.get(run["run_id"])
                    assert got is not None
                    if got["status"] == "complete":
                        assert len(got["sites"]) == got["summary"]["total"] == 13
                    else:
                        seen_running += 1
                        assert len(got["sites"]) == got["summary"]["total"] <= 13
                    reads += 1
    finally:
        if process.poll() is None:
            kill(process)
    assert process.returncode == 0
    assert reads > 20 and seen_running > 0  # really interleaved with the writer
    with History(db) as store:
        assert len(store.list(limit=None)) == 40
    assert integrity(db) == "ok"
