"""The store of acknowledgements and notes (testrun/notes.py) on a real SQLite file: it
shares the history's file without touching the history's schema, a database made before it
keeps working (and one made with it still opens in the history alone), one holder per site
of an event, and a note is stored whole or not at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridgemon.testrun import history
from bridgemon.testrun.history import History
from bridgemon.testrun.notes import (
    MAX_NOTE,
    AlreadyTaken,
    Note,
    NoteRejected,
    Notes,
    clean_text,
)
from bridgemon.testrun_schema import ReportHeader

HEADER: ReportHeader = {"run_id": "20261127T101010-abcd", "started_at": "2026-11-27T10:10:10+07:00",
                        "event": "giao-ban", "operator": "an", "trigger": "cli"}


def db(tmp_path: Path) -> Path:
    return history.file_in(tmp_path / "state")


def test_a_history_database_made_before_the_notes_keeps_working(tmp_path: Path) -> None:
    path = db(tmp_path)
    with History(path) as runs:
        runs.begin(HEADER)
        runs.add_site(HEADER["run_id"], {"id": "502", "verdict": "ready"})
        runs.finish(HEADER["run_id"], "2026-11-27T10:11:00+07:00")
        version = runs.schema_version
    notes = Notes(path)
    try:
        assert notes.schema_version == 1
        notes.take("giao-ban", "502", "an", "đã gọi")
        notes.add_note("502", "an", "ghi chú")
    finally:
        notes.close()
    # The history opens it as before, its schema untouched, its run whole.
    with History(path) as runs:
        assert runs.schema_version == version
        report = runs.get(HEADER["run_id"])
        assert report is not None and [s["id"] for s in report["sites"]] == ["502"]
        runs.begin({**HEADER, "run_id": "20261127T121212-beef"})
    # And the notes again (already migrated: nothing to do), with what they held.
    notes = Notes(path)
    try:
        assert [(a.site_id, a.user, a.note) for a in notes.held()] == [("502", "an", "đã gọi")]
        assert [n.text for n in notes.notes("502")] == ["ghi chú"]
    finally:
        notes.close()


def test_a_newer_notes_schema_is_refused_by_name(tmp_path: Path) -> None:
    path = db(tmp_path)
    Notes(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE notes_schema SET version = 99")
    conn.close()
    with pytest.raises(Exception, match=r"notes schema version 99 is newer"):
        Notes(path)


def test_one_holder_per_site_of_an_event_and_release_by_anyone(tmp_path: Path) -> None:
    notes = Notes(db(tmp_path))
    try:
        first = notes.take("giao-ban", "502", "an", "đang gọi", now=1000.0)
        again = notes.take("giao-ban", "502", "an", "đã gọi xong", now=2000.0)
        assert (again.taken_at, again.note) == (1000.0, "đã gọi xong") == (first.taken_at,
                                                                          "đã gọi xong")
        with pytest.raises(AlreadyTaken) as taken:
            notes.take("giao-ban", "502", "bình", "")
        assert taken.value.ack.user == "an"
        # Another event's same site is another take.
        notes.take("hop-khac", "502", "bình", "")
        released = notes.release("giao-ban", "502", "bình")
        assert released is not None and released.user == "an"
        assert notes.release("giao-ban", "502", "bình") is None
        assert [(a.event_id, a.user) for a in notes.held()] == [("hop-khac", "bình")]
        assert notes.take("giao-ban", "502", "bình", "").user == "bình"
        assert [a.site_id for a in notes.held("giao-ban")] == ["502"]
    finally:
        notes.close()


def test_a_refused_note_stores_nothing(tmp_path: Path) -> None:
    notes = Notes(db(tmp_path))
    try:
        with pytest.raises(NoteRejected) as refused:
            notes.add_note("502", "an", "x" * (MAX_NOTE + 1))
        assert refused.value.field == "text"
        with pytest.raises(NoteRejected):
            notes.take("giao-ban", "502", "an", "x" * (MAX_NOTE + 1))
        with pytest.raises(NoteRejected):
            notes.add_note("502", "an", " \n\t ")
        assert notes.notes("502") == [] and notes.held() == []
        kept = notes.add_note("502", "an", "a\x00b\x1b[31mc\r\nd")
        assert kept.text == "ab[31mc\nd"
        assert notes.notes("502") == [kept]
        assert notes.notes("502", limit=1) == [kept]
    finally:
        notes.close()


def test_notes_come_newest_first_and_bounded(tmp_path: Path) -> None:
    notes = Notes(db(tmp_path))
    try:
        made = [notes.add_note("502", "an", f"ghi chú {i}", event_id=None, now=float(i))
                for i in range(5)]
        assert notes.notes("502", limit=3) == [made[4], made[3], made[2]]
        assert notes.notes("49") == []
        assert isinstance(made[0], Note) and made[0].event_id is None
    finally:
        notes.close()


@settings(max_examples=200, deadline=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=MAX_NOTE + 20), st.none(), st.integers(), st.binary()))
def test_clean_text_keeps_its_bounds_or_names_the_field(value: object) -> None:
    try:
        text = clean_text(value, field="note")
    except NoteRejected as exc:
        assert exc.field == "note" and str(exc)
        return
    assert isinstance(text, str) and len(text) <= MAX_NOTE
    assert text == text.strip()
    assert not any(ord(ch) < 32 and ch not in "\t\n" for ch in text)
    assert "\r" not in text
