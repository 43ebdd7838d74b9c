"""Read-only user queries over a ledger file: `run_query(path, sql)` returns columns and rows.

Writes are refused twice: the statement must parse as a read (SELECT, EXPLAIN, PRAGMA; DESCRIBE, SHOW and
SUMMARIZE parse as SELECT), and the connection itself is read-only with external access disabled and its
configuration locked, so INSERT/UPDATE/DELETE/CREATE/DROP, ATTACH, COPY ... TO, INSTALL/LOAD and SET all
fail inside DuckDB even if the parse check were fooled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerlab.core.errors import QueryError, ReadOnlyQueryError

if TYPE_CHECKING:
    import duckdb

_READS = {"SELECT", "EXPLAIN", "PRAGMA"}
_REFUSALS = ("read-only mode", "configuration has been locked", "disabled by configuration",
             "Cannot launch in-memory database in read-only mode")


@dataclass(frozen=True)
class QueryResult:
    """A query's column names and rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(path: str | os.PathLike[str], sql: str, wait_s: float | None = None) -> QueryResult:
    """Run one read-only statement against the ledger at `path`."""
    import duckdb

    from ledgerlab.storage.ledger import read_only_connection

    upgrade_views_if_old(Path(path), wait_s)
    with read_only_connection(path, wait_s=wait_s) as con:
        statement = _single_read(con, sql)
        try:
            cursor = con.execute(statement)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns, cursor.fetchall())
        except duckdb.Error as exc:
            raise _as_query_error(exc) from None


def _single_read(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The one statement in `sql`, if it is a read; QueryError/ReadOnlyQueryError otherwise."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise _as_query_error(exc) from None
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement, not {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READS:
        raise ReadOnlyQueryError(f"the ledger is read-only: {kind} statements are refused (use SELECT)")
    return statements[0].query


def _as_query_error(exc: Exception) -> QueryError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(marker in first for marker in _REFUSALS):
        return ReadOnlyQueryError(f"the ledger is read-only: {first}")
    return QueryError(first)


def upgrade_views_if_old(path: Path, wait_s: float | None = None) -> None:
    """Re-create the views when the file's are older than this ledgerlab's (briefly opens it for writing)."""
    from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
    from ledgerlab.storage.views import VIEWS_VERSION, has_meta, views_version

    with read_only_connection(path, wait_s=wait_s) as con:
        stale = not has_meta(con) or views_version(con) < VIEWS_VERSION
    if stale:
        DuckDBLedger(path, wait_s=wait_s).close()  # opening installs the current views
