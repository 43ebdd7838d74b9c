"""A consistent copy of the ledger for other tools: `snapshot(ledger_path, out)`, `ledgerlab snapshot OUT`.

The copy is a DuckDB file with the events, `ledger_meta`, the derived tables and the views, written in DuckDB's
v1.0.0 storage format (SNAPSHOT_STORAGE), which every DuckDB from 1.0.0 on opens; the ledger itself is in the
format of the DuckDB ledgerlab runs on, which older DuckDBs (a pip-installed CLI, a notebook's duckdb) cannot
read. It is one transaction's view of the ledger (a chain that verifies, up to the head it reports), taken
by the running campaign's process when one runs (over its socket, so the live file is never opened by anyone
else), else from the file opened read-only. It is written next to OUT and renamed onto it when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledgerlab.errors import LedgerError

if TYPE_CHECKING:
    import duckdb

SNAPSHOT_STORAGE = "v1.0.0"
OLDEST_READER = "1.0.0"  # the oldest DuckDB that opens a snapshot (tests/test_storage_snapshot.py checks it)
_ALIAS = "ledgerlab_snapshot"


@dataclass(frozen=True)
class SnapshotInfo:
    """What was written: the file, its event count and head seq, and who took it."""

    path: Path
    events: int
    head_seq: int
    via: str  # "the running campaign" or "the ledger file"


def snapshot(ledger_path: Path, out: Path, *, overwrite: bool = False, wait_s: float | None = None) -> SnapshotInfo:
    """Write a consistent copy of the ledger at `ledger_path` to the DuckDB file `out`."""
    from ledgerlab.storage.remote import RemoteConnection

    if not ledger_path.exists():
        raise LedgerError(f"no ledger at {ledger_path}: create one with `ledgerlab init DOMAIN`, then `ledgerlab run`")
    out = out.resolve()
    if out.exists() and (not overwrite or out.is_dir()):
        raise LedgerError(f"{out} exists; choose a new file (or --force to replace a file)")
    if not out.parent.is_dir():
        raise LedgerError(f"no folder {out.parent} to write the snapshot in")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        remote = RemoteConnection.connect(ledger_path)
        if remote is not None:
            with remote:
                answer = remote.snapshot(tmp)
            events, head, via = int(answer["events"]), int(answer["head_seq"]), "the running campaign"
        else:
            events, head = _from_file(ledger_path, tmp, wait_s)
            via = "the ledger file"
        os.replace(tmp, out)
    finally:
        _remove(tmp)
    return SnapshotInfo(out, events, head, via)


def copy_database(con: duckdb.DuckDBPyConnection, out: Path) -> tuple[int, int]:
    """Copy the database `con` is using into the new file `out` in one transaction: (events, head seq).

    Tables are copied without their PRIMARY KEY and UNIQUE indexes (DuckDB 1.0 cannot read how newer versions
    store those, even in v1.0.0 storage; the snapshot is only read); the views are this ledgerlab's.
    """
    from ledgerlab.storage.views import VIEWS, VIEWS_VERSION

    source = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    con.execute("SET enable_progress_bar = false")  # deriving an old ledger's rows takes seconds: not on stdout
    target = str(out).replace("'", "''")
    # READ_WRITE: a database opened read-only attaches others read-only unless told otherwise.
    con.execute(f"ATTACH '{target}' AS {_ALIAS} (STORAGE_VERSION '{SNAPSHOT_STORAGE}', READ_WRITE)")
    try:
        con.execute("BEGIN TRANSACTION")  # the tables and the count see one state of the ledger
        for table in ("events", "ledger_meta"):
            con.execute(f'CREATE TABLE {_ALIAS}.main.{table} AS SELECT * FROM "{source}".main.{table}')
        _copy_derived(con, source)
        con.execute(f"INSERT INTO {_ALIAS}.main.ledger_meta (key, value) VALUES ('views_version', ?)",
                    [str(VIEWS_VERSION)])
        con.execute(f"USE {_ALIAS}")  # the views' unqualified names are the snapshot's tables
        try:
            for name, sql in VIEWS.items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
        finally:
            con.execute(f'USE "{source}"')
        events, head = con.execute(f"SELECT count(*), coalesce(max(seq), 0) FROM {_ALIAS}.main.events").fetchone()  # type: ignore[misc]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute(f"DETACH {_ALIAS}")
    return int(events), int(head)


def _copy_derived(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """The source's derived tables, completed; derived from the copied events where the source predates them."""
    from ledgerlab.storage.derived import DERIVED

    sql = "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' AND table_name = ?"
    for derived in DERIVED:
        target = f"{_ALIAS}.main.{derived.table}"
        con.execute(derived.ddl(target))
        newest = 0
        if con.execute(sql, [source, derived.table]).fetchall()[0][0]:
            con.execute(f'INSERT INTO {target} SELECT * FROM "{source}".main.{derived.table} ORDER BY seq')
            newest = con.execute(f"SELECT coalesce(max(seq), 0) FROM {target}").fetchall()[0][0]
        rows = derived.select(f"seq > {int(newest)}", f"{_ALIAS}.main.events")
        con.execute(f"INSERT INTO {target} {rows} ORDER BY seq")


def _from_file(ledger_path: Path, out: Path, wait_s: float | None) -> tuple[int, int]:
    """No campaign runs: open the file read-only as every reader does, and copy from that connection."""
    from ledgerlab.storage.ledger import connect_with_retry

    con = connect_with_retry(ledger_path, read_only=True, wait_s=wait_s)
    try:
        return copy_database(con, out)
    finally:
        con.close()


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        try:
            leftover.unlink()
        except FileNotFoundError:
            pass

