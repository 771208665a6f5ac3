"""Acknowledgements and notes: which operator took which site of a conference ("Tôi nhận
xử lý": who, since when, an optional note) and what technicians wrote about a site.

Stored in the state directory's SQLite file beside the test-run history (``history.file_in``)
in tables of their own, with their own schema version (``notes_schema``): the history's
schema and its version are untouched, so every database in the field keeps working, an
older bridgemon opening a file with these tables simply ignores them, and the two stores
migrate independently. Each write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``,
flushed to disk): nothing is ever stored half-way.

What it must not do: judge, probe, render or know the inventory. The caller (testrun/service.py)
checks that the site and the event exist; this module checks only what it stores (text
length, control characters) and keeps one holder per site of an event.

Threads: like ``History``, one connection and a lock; the daemon calls it from its history
writer thread, so SQLite never runs on the event loop.
"""

from __future__ import annotations

import builtins
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bridgemon.testrun.history import migrate, open_database, schema_version

MAX_NOTE = 1000  # characters of a note (a phone's message, not a report)
NOTES_SHOWN = 50  # a site's notes listed, newest first


@dataclass(frozen=True, slots=True)
class Ack:
    """A site of a conference someone took: who, since when (unix time), their note."""

    event_id: str
    site_id: str
    user: str
    taken_at: float
    note: str


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    site_id: str
    user: str
    created: float  # unix time
    text: str
    event_id: str | None  # the conference it was written for, if any


class NoteRejected(ValueError):
    """Input that cannot be stored; ``field`` names it, the message is Vietnamese first."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(LookupError):
    """An unknown site or event (the caller's check); ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AlreadyTaken(Exception):
    """The site is held by someone else: they release it first (any operator may)."""

    def __init__(self, ack: Ack) -> None:
        super().__init__(f"{ack.site_id} is taken by {ack.user}")
        self.ack = ack


# Control characters a note cannot hold (C0 but tab and newline, DEL, C1): a note is shown
# in pages and read aloud on the phone; a terminal escape or a NUL has no business in it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(value: object, *, field: str = "note", required: bool = False) -> str:
    """A note as stored: a string of at most MAX_NOTE characters (after trimming), line
    breaks as ``\\n``, no control characters. Raises NoteRejected naming ``field``."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise NoteRejected(field, f"{field} phải là chuỗi ký tự ({field} must be a string)")
    text = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if len(text) > MAX_NOTE:
        raise NoteRejected(field, f"Ghi chú dài {len(text)} ký tự, tối đa {MAX_NOTE}: hãy "
                                  f"viết ngắn lại; chưa lưu gì (a note is at most "
                                  f"{MAX_NOTE} characters; nothing was stored)")
    if required and not text:
        raise NoteRejected(field, "Ghi chú đang trống; chưa lưu gì (the note is empty; "
                                  "nothing was stored)")
    return text


# --- schema --------------------------------------------------------------------------
# As in history.py: MIGRATIONS[i] takes these tables from version i to i + 1 inside one
# write transaction; append, never edit a released step.


def _schema_1(conn: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE notes_schema (version INTEGER NOT NULL)",
        "INSERT INTO notes_schema (version) VALUES (0)",
        """CREATE TABLE site_acks (
            seq         INTEGER PRIMARY KEY,
            event_id    TEXT NOT NULL,
            site_id     TEXT NOT NULL,
            user        TEXT NOT NULL,
            taken_at    REAL NOT NULL,
            note        TEXT NOT NULL,
            released_at REAL,           -- NULL while held
            released_by TEXT
        )""",
        # One holder per site of an event at a time; released takes stay as history.
        "CREATE UNIQUE INDEX site_acks_held ON site_acks (event_id, site_id)"
        " WHERE released_at IS NULL",
        """CREATE TABLE site_notes (
            id       INTEGER PRIMARY KEY,
            site_id  TEXT NOT NULL,
            event_id TEXT,
            user     TEXT NOT NULL,
            created  REAL NOT NULL,
            text     TEXT NOT NULL
        )""",
        "CREATE INDEX site_notes_by_site ON site_notes (site_id, id)",
    ):
        conn.execute(statement)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_schema_1]


class Notes:
    """Acknowledgements and notes in one SQLite file (the history's, usually)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = open_database(self.path)
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA synchronous = FULL")  # a few writes an hour: each flushed
        migrate(conn, MIGRATIONS, self._transaction, table="notes_schema",
                path=str(self.path), what="notes schema")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn, "notes_schema")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- acknowledgements ------------------------------------------------------------

    def take(self, event_id: str, site_id: str, user: str, note: str,
             now: float | None = None) -> Ack:
        """``user`` takes the site (its note replaced if they held it already). Raises
        AlreadyTaken when another user holds it."""
        note = clean_text(note)
        at = time.time() if now is None else now
        with self._transaction() as conn:
            held = _held(conn, event_id, site_id)
            if held is not None and held.user != user:
                raise AlreadyTaken(held)
            if held is not None:
                conn.execute("UPDATE site_acks SET note = ? WHERE event_id = ? AND site_id = ?"
                             " AND released_at IS NULL", (note, event_id, site_id))
                return Ack(event_id, site_id, user, held.taken_at, note)
            conn.execute("INSERT INTO site_acks (event_id, site_id, user, taken_at, note)"
                         " VALUES (?, ?, ?, ?, ?)", (event_id, site_id, user, at, note))
            return Ack(event_id, site_id, user, at, note)

    def release(self, event_id: str, site_id: str, user: str,
                now: float | None = None) -> Ack | None:
        """Release the site, whoever held it (the released take, or None if none was)."""
        at = time.time() if now is None else now
        with self._transaction() as conn:
            held = _held(conn, event_id, site_id)
            if held is not None:
                conn.execute("UPDATE site_acks SET released_at = ?, released_by = ?"
                             " WHERE event_id = ? AND site_id = ? AND released_at IS NULL",
                             (at, user, event_id, site_id))
            return held

    def held(self, event_id: str | None = None) -> builtins.list[Ack]:
        """The takes still held (of one event, or all), oldest first."""
        where = " AND event_id = ?" if event_id is not None else ""
        args = (event_id,) if event_id is not None else ()
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id, site_id, user, taken_at, note FROM site_acks"
                " WHERE released_at IS NULL" + where + " ORDER BY seq", args).fetchall()
        return [Ack(str(e), str(s), str(u), float(t), str(n)) for e, s, u, t, n in rows]

    # --- notes -----------------------------------------------------------------------

    def add_note(self, site_id: str, user: str, text: str, event_id: str | None = None,
                 now: float | None = None) -> Note:
        text = clean_text(text, field="text", required=True)
        at = time.time() if now is None else now
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO site_notes (site_id, event_id, user, created, text)"
                " VALUES (?, ?, ?, ?, ?)", (site_id, event_id, user, at, text))
            note_id = cursor.lastrowid
        assert note_id is not None
        return Note(int(note_id), site_id, user, at, text, event_id)

    def notes(self, site_id: str, limit: int = NOTES_SHOWN) -> builtins.list[Note]:
        """A site's notes, newest first, at most ``limit``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, site_id, user, created, text, event_id FROM site_notes"
                " WHERE site_id = ? ORDER BY id DESC LIMIT ?", (site_id, limit)).fetchall()
        return [Note(int(i), str(s), str(u), float(c), str(t), None if e is None else str(e))
                for i, s, u, c, t, e in rows]


def _held(conn: sqlite3.Connection, event_id: str, site_id: str) -> Ack | None:
    row = conn.execute("SELECT user, taken_at, note FROM site_acks WHERE event_id = ?"
                       " AND site_id = ? AND released_at IS NULL",
                       (event_id, site_id)).fetchone()
    return None if row is None else Ack(event_id, site_id, str(row[0]), float(row[1]),
                                        str(row[2]))
