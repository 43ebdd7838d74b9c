"""The append-only event ledger in one DuckDB file: the `events` table, its hash chain, and file locking.

    ledger = DuckDBLedger(project.ledger_path)
    rows = ledger.append(campaign_id, [event, ...], expected_version=ledger.version(campaign_id))
    with read_only_connection(project.ledger_path) as con: con.execute("SELECT * FROM runs").fetchall()

Locking. DuckDB lets one process open a file for writing, and while it does no other process can open it at
all, not even read-only ("Could not set lock on file ... Conflicting lock is held"); several read-only
processes can share it when nobody writes. Measured on the 2-core dev box: open+insert+close ≈ 19 ms,
open read-only+query+close ≈ 15 ms; a single-row INSERT commits in 1.5-5 ms, most of it the WAL fsync
(200-650 tx/s for bare DuckDB, depending on how busy the shared disk is); a batch inserted from numpy
arrays costs ≈ 8-10 µs per event (the two indexes ≈ 3 µs of it) plus one fsync (list parameters through unnest:
≈ 20 µs; executemany: ≈ 500 µs); sealing an event (encode, id, hash, row) costs ≈ 5 µs of Python (`events.seal`).
So the writer holds its connection as a *lease*:
- it opens the file on demand and a background thread closes it after `idle_s` (default 1 s) without an
  append, so back-to-back appends pay no open/close while a campaign whose runs take seconds leaves the
  file free most of the time;
- a reader that finds the file locked touches `<ledger>.readers` and polls every few milliseconds; the
  writer sees the newer mtime (checked on each call and by the idle thread), closes its lease and pauses
  `yield_s` before reopening, so readers get in even while the writer appends continuously;
- readers (`read_only_connection`) open read-only, run, close, and retry on the lock error for up to
  `wait_s` (default 30 s, env LEDGERLAB_LOCK_WAIT) before raising LedgerLockedError; the writer retries the
  same way, because a reader holds the file briefly.
A running campaign does not lease: `serve_readers` (storage/server.py) makes its writer keep the file open
(`keep_open`) and answers queries on the socket `<ledger>.sock` with cursors of that open database, so a
reader never holds the file a campaign needs. `read_only_connection` asks that socket first and opens the
file only when no campaign answers; a process that opens the file directly while a campaign runs is refused
by DuckDB's lock at once and cannot stop the campaign.

Consistency. Within a lease the file lock is exclusive, so the writer caches the chain head and stream
versions (an append with a valid cache runs no query before its INSERT); every lease starts with empty
caches. The database still enforces the rules: `seq` is the PRIMARY KEY and (campaign_id, version) is UNIQUE,
so a writer with stale caches gets a constraint error, which becomes ConcurrencyError after a fresh re-check.
An append is one transaction: one INSERT into `events`, and for run and hypothesis events one INSERT per
derived table (storage/derived.py): all or nothing. Its commit is durable (DuckDB fsyncs the WAL); the WAL is
checkpointed into the file at CHECKPOINT_THRESHOLD and when the lease closes, and replayed on the next open
after a kill -9 (≈ 1 s for a full 128 MiB WAL, ≈ 350,000 events).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ledgerlab.errors import ConcurrencyError, LedgerError, LedgerLockedError
from ledgerlab.storage.derived import DERIVED_TYPES, append_derived
from ledgerlab.storage.events import GENESIS_HASH, Event, StoredEvent, seal
from ledgerlab.storage.memory import stale_message
from ledgerlab.storage.schema import COLUMNS
from ledgerlab.storage.views import install

if TYPE_CHECKING:
    import duckdb

DEFAULT_WAIT_S = 30.0
# The writer checkpoints its WAL into the file at this size and whenever its lease closes. DuckDB's default,
# 16 MiB, made a bulk load of 1M events checkpoint ~20 times, 30-45% of its append time; the price of a larger WAL is
# a longer checkpoint when a waiting reader makes the writer yield mid-load (≈ 0.3-1.5 s), and a longer replay
# after a crash.
CHECKPOINT_THRESHOLD = "128MiB"
_ONE_ROW = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A batch: its varying columns as a dict of numpy arrays in the local variable `_ledgerlab_batch` of
# `insert_events`, which DuckDB's replacement scan reads by name without a Python call per value (3x faster
# than list parameters; `register` costs a catalog change per call); the append's campaign and timestamp as
# parameters.
_MANY_ROWS = (
    "INSERT INTO events SELECT seq, event_id, $campaign_id, version, type, schema_version, payload, $recorded_at, "
    "prev_hash, hash FROM _ledgerlab_batch"
)

_lockdown = threading.Lock()  # one thread at a time checks and locks down a read-only database instance
# Every writer not yet garbage: closed before the interpreter starts to finalize (see _close_at_exit).
_open_ledgers: weakref.WeakSet[DuckDBLedger] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Close the writers a program left open, while threads still run normally.

    A lease closed later, by its daemon thread during finalization, would be ended inside DuckDB's C++ frames:
    the process aborts ("terminate called after throwing …", SIGABRT) after its work is done.
    """
    for ledger in list(_open_ledgers):
        if ledger.pid == os.getpid():  # a forked child never closes (and checkpoints) its parent's file
            ledger.close()


@runtime_checkable
class EventStore(Protocol):
    """What the campaign loop needs from a ledger: append with optimistic concurrency, and read."""

    def append(self, campaign_id: str, events: Sequence[Event], expected_version: int) -> list[StoredEvent]: ...

    def read(
        self, campaign_id: str | None = None, after_seq: int = 0, types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]: ...

    def version(self, campaign_id: str) -> int: ...

    def campaign_ids(self) -> list[str]: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------- opening


def default_wait_s() -> float:
    """How long to wait for a locked ledger: $LEDGERLAB_LOCK_WAIT seconds, else 30."""
    return float(os.environ.get("LEDGERLAB_LOCK_WAIT", DEFAULT_WAIT_S))


def readers_flag(path: Path) -> Path:
    """The file whose mtime tells the writer that a reader is waiting."""
    return path.with_name(path.name + ".readers")


def _is_busy(exc: Exception) -> bool:
    # Another process holds the lock, or this process has the file open with the other mode (the lease).
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text or "different configuration" in text


def connect_with_retry(
    path: Path, *, read_only: bool, wait_s: float | None = None, remote: Callable[[Path], Any] | None = None,
) -> Any:
    """Open the file, retrying with backoff while another process holds its lock.

    `remote`: tried on each retry; what it returns instead of None is used (a campaign that began answering).
    """
    import duckdb

    wait = default_wait_s() if wait_s is None else wait_s
    deadline, pause = time.monotonic() + wait, 0.002
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_busy(exc):
                raise LedgerError(f"cannot open the ledger {path}: {str(exc).splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                raise LedgerLockedError(
                    f"the ledger {path} stayed locked by another process for {wait:g} s (a program with the file open, "
                    "e.g. duckdb; query a snapshot instead: `ledgerlab snapshot OUT`); retry, or wait longer with "
                    "LEDGERLAB_LOCK_WAIT=<seconds>"
                ) from None
        if remote is not None and (answer := remote(path)) is not None:
            return answer
        if read_only:
            _touch(readers_flag(path))  # ask the writer to hand over its lease
        time.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def _touch(path: Path) -> None:
    try:
        path.touch()
    except OSError:
        pass  # a read-only folder: the reader still gets in when the writer's lease goes idle


@contextmanager
def read_only_connection(path: str | os.PathLike[str], wait_s: float | None = None) -> Iterator[Any]:
    """A read-only connection, closed on exit: the running campaign's socket, else the file locked down.

    Either answers `execute(sql, params)` with a cursor's `description`, `fetchall`, `fetchone`, `fetchmany`
    (storage/remote.py); the file's is a DuckDB connection that cannot touch files or change settings.
    """
    from ledgerlab.storage.remote import RemoteConnection

    file = Path(path)
    if not file.exists():
        raise LedgerError(f"no ledger at {file}: create one with `ledgerlab init DOMAIN`, then `ledgerlab run`")
    con = RemoteConnection.connect(file) or open_read_only(file, wait_s)
    try:
        yield con
    finally:
        con.close()


def open_read_only(file: Path, wait_s: float | None = None) -> Any:
    """The file opened read-only and locked down; a campaign that starts answering meanwhile is used instead."""
    from ledgerlab.storage.remote import RemoteConnection

    con = connect_with_retry(file, read_only=True, wait_s=wait_s, remote=RemoteConnection.connect)
    if isinstance(con, RemoteConnection):
        return con
    # DuckDB shares one database instance between a process's connections to a file: when another of ours has
    # locked it down already, this one inherits that (and may change nothing).
    with _lockdown:
        if con.execute("SELECT current_setting('lock_configuration'), "
                       "current_setting('enable_external_access')").fetchone() != (True, False):
            con.execute("SET enable_external_access = false")
            con.execute("SET enable_progress_bar = false")  # a long query would draw it on stdout, into the output
            con.execute("SET lock_configuration = true")
    return con


# ------------------------------------------------------------------------------------------ writer


class DuckDBLedger:
    """The event store in a DuckDB file; the only writer of that file (see the module docstring)."""

    def __init__(
        self, path: str | os.PathLike[str], *, idle_s: float = 1.0, wait_s: float | None = None,
        yield_s: float = 0.05, guard: Callable[[], None] | None = None,
    ) -> None:
        """`guard`: called before each lease opens the file; it raises to stop the writer (core/runner_lock.py)."""
        self.path = Path(path)
        self._guard = guard
        self._flag = str(readers_flag(self.path))
        self.idle_s, self.wait_s, self.yield_s = idle_s, wait_s, yield_s
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lease_started_ns = 0
        self._last_used = 0.0
        self._resume_at = 0.0
        self._keep_open = False
        self._lease_no = 0  # which lease a reaper watches: it never holds the connection itself (see _reap)
        self._reaper: threading.Thread | None = None
        self._head: tuple[int, str] | None = None
        self._versions: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        _open_ledgers.add(self)
        with self._lock:
            install(self._lease())

    # --- the lease

    def _lease(self) -> duckdb.DuckDBPyConnection:
        """The open connection, opening (or re-opening after yielding to a reader) as needed."""
        if self._con is not None and not self._keep_open and self._reader_waiting():
            self._release(yield_to_reader=True)
        if self._con is None:
            delay = self._resume_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if self._guard is not None:
                self._guard()
            self._con = connect_with_retry(self.path, read_only=False, wait_s=self.wait_s)
            self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
            # A backfill of derived rows (views.install) can run for seconds: DuckDB would draw its progress bar
            # on stdout, into whatever the command prints.
            self._con.execute("SET enable_progress_bar = false")
            self._lease_started_ns = time.time_ns()
            self._head, self._versions = None, {}
            self._lease_no += 1
            self._start_reaper()
        self._last_used = time.monotonic()
        return self._con

    def _reader_waiting(self) -> bool:
        try:
            return os.stat(self._flag).st_mtime_ns > self._lease_started_ns
        except OSError:
            return False

    def _release(self, yield_to_reader: bool = False) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if yield_to_reader:
            self._resume_at = time.monotonic() + self.yield_s

    def _start_reaper(self) -> None:
        self._reaper = threading.Thread(target=self._reap, args=(self._lease_no,), daemon=True, name="ledger-lease")
        self._reaper.start()

    def _reap(self, lease_no: int) -> None:
        """Close the lease after `idle_s` without use, or at once when a reader waits.

        It holds the lease's number, not its connection: a daemon thread that dropped the last reference to a
        DuckDB connection while the interpreter exits would be ended inside DuckDB's destructor (SIGABRT).
        """
        while True:
            with self._lock:
                if self._con is None or self._lease_no != lease_no or self._keep_open:
                    return  # closed, or held open for a campaign's whole life (keep_open restarts the reaper)
                idle = time.monotonic() - self._last_used
                if idle >= self.idle_s or self._reader_waiting():
                    self._release(yield_to_reader=idle < self.idle_s)
                    return
                pause = min(self.idle_s - idle, 0.02)
            time.sleep(pause)

    def keep_open(self, on: bool) -> None:
        """Hold the file open until close(), DuckDB on one thread (on); or go back to leasing it (off).

        One thread: each reader's query then runs on its own handler thread only (see storage/server.py); the
        writer's appends are single-row or small-batch INSERTs, which do not use more.
        """
        with self._lock:
            self._keep_open = on
            if on:
                self._lease().execute("SET threads = 1")
            elif self._con is not None:
                self._con.execute("RESET threads")
                self._start_reaper()

    def reader_cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the open database, for one reader's query (close it with close_cursor)."""
        with self._lock:
            if self._con is None:
                raise LedgerError("the ledger is closed")
            return self._con.cursor()

    def close_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Close a reader's cursor (under the lock: DuckDB's connection keeps a list of its cursors)."""
        with self._lock:
            cursor.close()

    # --- the store

    def append(self, campaign_id: str, events: Sequence[Event], expected_version: int) -> list[StoredEvent]:
        """Append `events` atomically to a stream at `expected_version`; ConcurrencyError writes nothing."""
        import duckdb

        with self._lock:
            for attempt in (1, 2):
                con = self._lease()
                current = self._stream_version(con, campaign_id)
                if current != expected_version:
                    self._forget()
                    current = self._stream_version(con, campaign_id)
                    if current != expected_version:
                        raise ConcurrencyError(stale_message(campaign_id, expected_version, current))
                if not events:
                    return []
                seq, prev_hash = self._chain_head(con)
                rows = seal(campaign_id, events, first_seq=seq + 1, first_version=current + 1, prev_hash=prev_hash)
                try:
                    _insert(con, rows)
                except duckdb.ConstraintException as exc:
                    self._forget()  # someone else appended (same process, another handle): re-check once
                    if attempt == 2:
                        raise ConcurrencyError(f"append to {campaign_id!r} collided with another writer: {exc}") from None
                    continue
                self._head = (rows[-1].seq, rows[-1].hash)
                self._versions[campaign_id] = rows[-1].version
                return rows
        raise AssertionError("unreachable")

    def read(
        self, campaign_id: str | None = None, after_seq: int = 0, types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Rows with seq > after_seq, in seq order, optionally of one campaign and some types."""
        sql, params = select_events(campaign_id, after_seq, types, limit)
        with self._lock:
            fetched = self._lease().execute(sql, params).fetchall()
        return [to_stored(row) for row in fetched]

    def version(self, campaign_id: str) -> int:
        """The campaign stream's current version (0 when it has no events)."""
        with self._lock:
            return self._stream_version(self._lease(), campaign_id)

    def campaign_ids(self) -> list[str]:
        """Campaign ids in order of their first event."""
        sql = "SELECT campaign_id FROM events GROUP BY campaign_id ORDER BY min(seq)"
        with self._lock:
            return [row[0] for row in self._lease().execute(sql).fetchall()]

    def head(self) -> tuple[int, str]:
        """The chain head: (seq, hash) of the newest event, (0, GENESIS_HASH) for an empty ledger."""
        with self._lock:
            return self._chain_head(self._lease())

    def close(self) -> None:
        """Release the file now and wait for the lease's thread to end (the store reopens the file if used again)."""
        with self._lock:
            self._keep_open = False
            self._release()
            reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join()  # it sees the lease gone at its next look (≤ 20 ms): no thread of ours outlives close()

    def __enter__(self) -> DuckDBLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- caches valid for one lease (results are read to the end, so no statement stays open on the lease)

    def _forget(self) -> None:
        self._head, self._versions = None, {}

    def _stream_version(self, con: duckdb.DuckDBPyConnection, campaign_id: str) -> int:
        if campaign_id not in self._versions:
            rows = con.execute("SELECT max(version) FROM events WHERE campaign_id = ?", [campaign_id]).fetchall()
            self._versions[campaign_id] = int(rows[0][0] or 0) if rows else 0
        return self._versions[campaign_id]

    def _chain_head(self, con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
        if self._head is None:
            rows = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchall()
            self._head = (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)
        return self._head


# ----------------------------------------------------------------------------------------- helpers


def _insert(con: duckdb.DuckDBPyConnection, rows: Sequence[StoredEvent]) -> None:
    """Insert the rows, and the rows derived from them (storage/derived.py), in one transaction."""
    types = {row.type for row in rows}
    if types.isdisjoint(DERIVED_TYPES):
        insert_events(con, rows)  # one statement: its own transaction
        return
    con.execute("BEGIN TRANSACTION")
    try:
        insert_events(con, rows)
        append_derived(con, types, rows[0].seq, rows[-1].seq)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # the failed statement (or COMMIT) already ended the transaction


def insert_events(con: duckdb.DuckDBPyConnection, rows: Sequence[StoredEvent]) -> None:
    """One statement into `events` alone: a single VALUES row, or the batch's columns scanned from numpy."""
    first = rows[0]
    stamp = _naive_utc(first.recorded_at)  # one timestamp per append (see `seal`)
    if len(rows) == 1:
        con.execute(_ONE_ROW, [
            first.seq, first.event_id, first.campaign_id, first.version, first.type, first.schema_version,
            first.payload, stamp, first.prev_hash, first.hash,
        ])
        return
    import numpy as np

    seq, event_id, campaign, version, event_type, schema_version, payload, recorded, prev_hash, digest = zip(*rows)
    if len(set(campaign)) > 1 or len(set(recorded)) > 1:
        raise ValueError("rows of one append share their campaign and timestamp")
    _ledgerlab_batch = {  # read by name in _MANY_ROWS (a DuckDB replacement scan)
        "seq": np.array(seq, dtype=np.int64),
        "version": np.array(version, dtype=np.int64),
        "event_id": np.array(event_id, dtype=object),
        "type": np.array(event_type, dtype=object),
        "schema_version": np.array(schema_version, dtype=np.int32),
        "payload": np.array(payload, dtype=object),
        "prev_hash": np.array(prev_hash, dtype=object),
        "hash": np.array(digest, dtype=object),
    }
    con.execute(_MANY_ROWS, {"campaign_id": first.campaign_id, "recorded_at": stamp})


def _naive_utc(stamp: datetime) -> datetime:
    # DuckDB TIMESTAMP is naive; the value is UTC by construction.
    return stamp.astimezone(UTC).replace(tzinfo=None)


def select_events(
    campaign_id: str | None, after_seq: int, types: Sequence[str] | None, limit: int | None
) -> tuple[str, list[Any]]:
    """The SELECT over `events` that `read` runs, with its parameters."""
    where: list[str] = ["seq > ?"]
    params: list[Any] = [after_seq]
    if campaign_id is not None:
        where.append("campaign_id = ?")
        params.append(campaign_id)
    if types is not None:
        names = list(types)
        where.append(f"type IN ({', '.join('?' * len(names))})" if names else "FALSE")
        params.extend(names)
    sql = f"SELECT {', '.join(COLUMNS)} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def to_stored(row: Sequence[Any]) -> StoredEvent:
    """A fetched `events` row as a StoredEvent (recorded_at made timezone-aware UTC)."""
    data = dict(zip(COLUMNS, row))
    data["recorded_at"] = data["recorded_at"].replace(tzinfo=UTC)
    return StoredEvent(**data)
