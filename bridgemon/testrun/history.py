"""Test-run history: every run and each of its per-site results, in SQLite (WAL mode).

What it holds: the report dict of every test run (docs/testrun.schema.json), split into
the header (the report without its sites) and one row per site result, stored the moment
each is known. ``get`` gives the report dict back exactly as it was stored, so
``bridgemon report RUN_ID`` renders a years-old run as it rendered on the day.

What it must not do: judge, probe or render. It stores and returns plain dicts and knows
nothing of sites, verdict rules or formats (the verdict names are only counted, for the
summary of a run that never finished).

Durability, and why it costs what it costs:
- each ``add_site`` (or ``add_sites``, a batch) is its own committed transaction, with
  ``synchronous=NORMAL``: the rows are in the WAL file the moment the call returns, so a
  SIGKILL (or a crash) of the process loses nothing already added. It does not wait for a
  disk flush: a 12,000-site run would otherwise spend seconds in fsync. The daemon adds a
  run's sites in batches (``run_and_store``), encoded on its loop (``encode_site``): a
  site encoded and stored at a time, the writer thread held the GIL against the engine;
- ``begin``, ``finish`` and ``abort`` commit with ``synchronous=FULL``: the WAL is flushed
  to disk, and with it every site row written before. A finished run survives a power
  cut too; at worst the sites of a run still going at the cut are lost, and the run is
  found as ``running`` and marked ``incomplete``.
- a run whose process died (SIGKILL, crash, reboot) stays ``running`` in the database;
  ``mark_incomplete()``, called by the daemon and the CLI at start, turns it into
  ``incomplete``. Each run records its owner (pid, that process's start time and the
  kernel's boot id), so a run of a live process is never touched, and a recycled pid after
  a reboot does not keep a dead run alive.

Threads: one ``History`` holds one connection and a lock; every method may be called from
any thread (the daemon calls them through ``asyncio.to_thread``), and calls are
serialized. Several processes (the daemon and a ``bridgemon test`` from a shell) may use
the same file at once: WAL lets readers read while one writer writes, and writers wait
for each other (busy timeout) rather than fail.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, cast

from bridgemon import verdicts
from bridgemon.testrun_schema import Report, ReportHeader, RunListing, SiteReport
from bridgemon.verdicts import Summary

log = logging.getLogger(__name__)

DEFAULT_FILE = "bridgemon.db"  # in the state directory
BUSY_TIMEOUT_S = 10.0
STATUSES = ("running", "complete", "incomplete")


def file_in(state_dir: Path) -> Path:
    """Where the history of a state directory is: every bridgemon process agrees."""
    return state_dir / DEFAULT_FILE


class HistoryError(Exception):
    """The database cannot be used (newer schema than this code, no WAL support, ...)."""


# --- schema --------------------------------------------------------------------------
# MIGRATIONS[i] takes a database from schema version i to i + 1 inside one write
# transaction; version 0 is an empty file. To change the schema, append a function (never
# edit a released one): every database in the field is then upgraded on its next open.


def _schema_1(conn: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
        """CREATE TABLE runs (
            run_id      TEXT PRIMARY KEY,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            status      TEXT NOT NULL CHECK (status IN ('running', 'complete', 'incomplete')),
            event       TEXT,
            header      TEXT NOT NULL,   -- the report without its sites, JSON, as begun
            summary     TEXT,            -- JSON, set by finish()
            owner_pid   INTEGER,         -- who is running it: pid,
            owner_start TEXT,            -- that process's start time (/proc/PID/stat),
            owner_boot  TEXT,            -- and the boot it ran in
            created     REAL NOT NULL    -- unix time of begin(), for pruning
        )""",
        "CREATE INDEX runs_by_event ON runs (event, run_id)",
        "CREATE INDEX runs_running ON runs (status) WHERE status = 'running'",
        """CREATE TABLE run_sites (
            seq     INTEGER PRIMARY KEY,  -- insertion order: sites come back as added
            run_id  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            site_id TEXT NOT NULL,
            verdict TEXT NOT NULL,
            data    TEXT NOT NULL,        -- the site's dict, JSON
            UNIQUE (run_id, site_id)
        )""",
    ):
        conn.execute(statement)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_schema_1]


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to the state directory's database file, in WAL mode (readers never
    wait for the writer), in autocommit (transactions are explicit), usable from the
    writer thread; HistoryError when SQLite cannot use WAL there."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"{path}: SQLite cannot use WAL mode here (got {mode!r})")
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection, table: str = "schema_version") -> int:
    """The version a set of tables is at, kept in the one-row ``table`` (0: none yet)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute(f"SELECT version FROM {table}").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Callable[[sqlite3.Connection], None]],
            transaction: Callable[[], AbstractContextManager[object]], *, table: str,
            path: str, what: str = "schema") -> None:
    """Bring the tables whose version ``table`` keeps up to ``len(migrations)``, in one
    write transaction. BEGIN IMMEDIATE takes the write lock first, so two processes opening
    a new file at once migrate it once; the version is read again under the lock."""
    target = len(migrations)
    if schema_version(conn, table) == target:
        return
    with transaction():
        version = schema_version(conn, table)
        if version > target:
            raise HistoryError(f"{path}: {what} version {version} is newer than this "
                               f"bridgemon understands ({target}); upgrade bridgemon")
        for step in range(version, target):
            log.info("%s: migrating %s %d -> %d", path, what, step, step + 1)
            migrations[step](conn)
        conn.execute(f"UPDATE {table} SET version = ?", (target,))


# --- who owns a run ------------------------------------------------------------------


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process, None if there is none.

    The start time tells a process from a later one that got the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime)


def _owner() -> tuple[int, str | None, str | None]:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return pid, stat[1] if stat else None, _boot_id()


def _owner_alive(pid: int | None, start: str | None, boot: str | None) -> bool:
    if pid is None:
        return False
    current_boot = _boot_id()
    if boot is not None and current_boot is not None and boot != current_boot:
        return False  # every process of an earlier boot is gone
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False  # gone, or killed and not yet reaped
        return start is None or stat[1] == start
    # No /proc (not Linux): the pid alone, which a reused pid can fool.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the store -----------------------------------------------------------------------


class EncodedSite(NamedTuple):
    """A site's result as ``add_sites`` stores it: its id, its verdict and its JSON."""

    site_id: str
    verdict: str
    data: str


def encode_site(site: SiteReport) -> EncodedSite:
    """A site's result ready to store. Apart from ``add_sites`` so that the daemon encodes
    on its loop, a slice at a time, and its writer thread only writes: encoding a batch
    there held the GIL against the engine (turns of the loop of 30-45 ms in a national
    run).
    ValueError for a result without an id."""
    site_id = site.get("id")
    if not isinstance(site_id, str) or not site_id:
        raise ValueError("a site result needs an id")
    return EncodedSite(site_id, str(site.get("verdict") or verdicts.State.UNKNOWN),
                       _dumps(dict(site)))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class History:
    """The test-run store in one SQLite file (created with its directory if missing)."""

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
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, MIGRATIONS, lambda: self._transaction(durable=True),
                table="schema_version", path=str(self.path))

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, durable: bool = False, write: bool = True) -> Iterator[None]:
        """One transaction under the lock. ``durable``: the commit waits for the disk."""
        with self._lock:
            conn = self._conn
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    # --- writing ---------------------------------------------------------------------

    def begin(self, report_header: ReportHeader) -> None:
        """Record a new run as ``running``, owned by this process.

        ``report_header`` is the report dict without its sites (a ``sites`` key is
        ignored); it needs ``run_id`` and ``started_at``. ValueError if the run id exists.
        """
        header: dict[str, object] = {key: value for key, value in report_header.items()
                                     if key != "sites"}
        run_id, started_at = header.get("run_id"), header.get("started_at")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("a run needs a run_id")
        if not isinstance(started_at, str) or not started_at:
            raise ValueError(f"run {run_id}: needs started_at")
        header["status"] = "running"
        pid, start, boot = _owner()
        try:
            with self._transaction(durable=True):
                self._conn.execute(
                    "INSERT INTO runs (run_id, started_at, finished_at, status, event, header,"
                    " summary, owner_pid, owner_start, owner_boot, created)"
                    " VALUES (?, ?, NULL, 'running', ?, ?, NULL, ?, ?, ?, ?)",
                    (run_id, started_at, header.get("event"), _dumps(header), pid, start, boot,
                     time.time()),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"run {run_id} already exists") from None

    def add_site(self, run_id: str, site: SiteReport) -> None:
        """Store one site's result of a running run, committed before returning.

        KeyError for an unknown run; ValueError if the run is no longer running, if the
        site has no id, or if it already has a result.
        """
        self.add_sites(run_id, (encode_site(site),))

    def add_sites(self, run_id: str, sites: Sequence[EncodedSite]) -> None:
        """Store sites' results (``encode_site``) of a running run in one transaction,
        committed before returning: all of them, or (on an error) none.

        KeyError for an unknown run; ValueError if the run is no longer running, or if a
        site already has a result (stored before, or twice in ``sites``).
        """
        rows = [(run_id, site.site_id, site.verdict, site.data, run_id) for site in sites]
        if not rows:
            return
        try:
            with self._transaction():
                # Each row inserted only while the run is running.
                cursor = self._conn.executemany(
                    "INSERT INTO run_sites (run_id, site_id, verdict, data)"
                    " SELECT ?, ?, ?, ? WHERE EXISTS"
                    " (SELECT 1 FROM runs WHERE run_id = ? AND status = 'running')",
                    rows,
                )
                if cursor.rowcount == 0:
                    self._not_running(run_id)
        except sqlite3.IntegrityError:
            raise ValueError(f"run {run_id}: site {self._stored_of(run_id, sites)} already "
                             "stored") from None

    def _stored_of(self, run_id: str, sites: Sequence[EncodedSite]) -> str:
        """The first of ``sites`` that the run has already, or that comes twice."""
        seen: set[str] = set()
        with self._lock:
            for site in sites:
                if site.site_id in seen or self._conn.execute(
                        "SELECT 1 FROM run_sites WHERE run_id = ? AND site_id = ?",
                        (run_id, site.site_id)).fetchone():
                    return site.site_id
                seen.add(site.site_id)
        return sites[0].site_id

    def finish(
        self, run_id: str, finished_at: str, summary: Summary | None = None
    ) -> None:
        """Mark a run ``complete`` (one transaction, flushed to disk).

        ``summary`` None: counted from the stored sites. KeyError for an unknown run,
        ValueError for one not running (finished, or found dead and marked incomplete).
        """
        with self._transaction(durable=True):
            stored = self._counts(run_id)
            if summary is None:
                summary = stored
            elif summary.get("total") != stored["total"]:
                # Not refused: the run did happen. But a report whose summary and sites
                # disagree points at a bug in whoever ran it.
                log.warning("run %s: summary says %s sites, %d stored", run_id,
                            summary.get("total"), stored["total"])
            cursor = self._conn.execute(
                "UPDATE runs SET status = 'complete', finished_at = ?, summary = ?"
                " WHERE run_id = ? AND status = 'running'",
                (finished_at, _dumps(dict(summary)), run_id),
            )
            if cursor.rowcount == 0:
                self._not_running(run_id)

    def abort(self, run_id: str) -> None:
        """Mark a run of this process ``incomplete`` now (interrupted, failed): its sites so
        far are kept. KeyError for an unknown run; a run no longer running is left as is."""
        with self._transaction(durable=True):
            cursor = self._conn.execute(
                "UPDATE runs SET status = 'incomplete' WHERE run_id = ? AND status = 'running'",
                (run_id,),
            )
            if cursor.rowcount == 0 and self._status(run_id) is None:
                raise KeyError(run_id)

    def mark_incomplete(self) -> builtins.list[str]:
        """Mark ``incomplete`` every ``running`` run whose owner process is gone; their ids.

        Call at start (daemon, CLI). A run whose owner still runs (another bridgemon
        process, or this one) is left alone.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id, owner_pid, owner_start, owner_boot FROM runs"
                " WHERE status = 'running' ORDER BY run_id"
            ).fetchall()
        dead = [row[0] for row in rows if not _owner_alive(row[1], row[2], row[3])]
        marked = []
        with self._transaction(durable=True):
            for run_id in dead:
                cursor = self._conn.execute(
                    "UPDATE runs SET status = 'incomplete'"
                    " WHERE run_id = ? AND status = 'running'",
                    (run_id,),
                )
                if cursor.rowcount:
                    marked.append(run_id)
        for run_id in marked:
            log.warning("test run %s was cut short (its process is gone): marked incomplete",
                        run_id)
        return marked

    def _status(self, run_id: str) -> str | None:
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def _not_running(self, run_id: str) -> None:
        status = self._status(run_id)
        if status is None:
            raise KeyError(run_id)
        raise ValueError(f"run {run_id} is {status}, not running")

    def _counts(self, run_id: str) -> Summary:
        rows = self._conn.execute(
            "SELECT verdict, COUNT(*) FROM run_sites WHERE run_id = ? GROUP BY verdict",
            (run_id,),
        ).fetchall()
        return verdicts.add_up((str(verdict), int(n)) for verdict, n in rows)

    # --- reading ---------------------------------------------------------------------

    def _header(self, row: tuple[Any, ...]) -> ReportHeader:
        """A runs row (header, status, finished_at, summary, run_id) as the report header.

        The stored header is the report as begun; status, finished_at and summary are
        the columns' (what happened since). A run that never finished gets its summary
        counted from the sites stored so far."""
        header_json, status, finished_at, summary_json, run_id = row
        header: dict[str, Any] = json.loads(header_json)
        header.pop("sites", None)
        header["status"] = status
        header["finished_at"] = finished_at
        header["summary"] = (json.loads(summary_json) if summary_json is not None
                             else self._counts(run_id))
        # What begin() stored (a ReportHeader) with the columns' news: the JSON boundary.
        return cast(ReportHeader, header)

    def get(self, run_id: str) -> Report | None:
        """The full report dict of a run (sites in the order added), or None."""
        with self._transaction(write=False):  # one snapshot: header and sites agree
            row = self._conn.execute(
                "SELECT header, status, finished_at, summary, run_id FROM runs"
                " WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            sites: builtins.list[SiteReport] = [  # as add_site() stored them
                json.loads(data) for (data,) in self._conn.execute(
                    "SELECT data FROM run_sites WHERE run_id = ? ORDER BY seq", (run_id,)
                )
            ]
            return {**self._header(row), "sites": sites}

    def ids_starting_with(self, prefix: str, limit: int = 10) -> builtins.list[str]:
        """Run ids that begin with ``prefix``, newest first, at most ``limit`` (so a caller
        can tell a unique prefix from an ambiguous one with ``limit=2``)."""
        if not prefix:
            return []
        with self._lock:
            rows = self._conn.execute(
                # substr, not LIKE or GLOB: a prefix is compared as written, '%' and '*'
                # included.
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?"
                " ORDER BY run_id DESC LIMIT ?",
                (len(prefix), prefix, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def list(
        self, limit: int | None = 50, event: str | None = None, before: str | None = None
    ) -> builtins.list[RunListing]:
        """Run headers with their summary, newest first (run ids sort by time).

        ``event``: only that event's runs; ``before``: only runs older than that run id
        (the next page); ``limit`` None: all. Each dict also has ``sites_stored``.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if event is not None:
            where.append("event = ?")
            args.append(event)
        if before is not None:
            where.append("run_id < ?")
            args.append(before)
        sql = (
            "SELECT header, status, finished_at, summary, run_id,"
            " (SELECT COUNT(*) FROM run_sites s WHERE s.run_id = runs.run_id) FROM runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY run_id DESC"
            + (" LIMIT ?" if limit is not None else "")
        )
        if limit is not None:
            args.append(limit)
        with self._transaction(write=False):
            return [{**self._header(row[:5]), "sites_stored": int(row[5])}
                    for row in self._conn.execute(sql, args).fetchall()]
