"""Read-only user queries over a ledger: `run_query(path, sql)` returns columns and rows.

While a campaign runs, the query goes to its process over the ledger's socket (storage/server.py) and is
checked by `live_read` there; otherwise it runs on a read-only connection of the file. Writes are refused
twice either way:
- on the file: the statement must parse as a read (SELECT, EXPLAIN, PRAGMA; DESCRIBE, SHOW and SUMMARIZE
  parse as SELECT), and the connection itself is read-only with external access disabled and its
  configuration locked, so INSERT/UPDATE/DELETE/CREATE/DROP, ATTACH, COPY ... TO, INSTALL/LOAD and SET all
  fail inside DuckDB even if the parse check were fooled;
- in the campaign's process, where the database is open for writing and its settings are the writer's:
  `live_read` allows one SELECT (or plain EXPLAIN, or an introspection PRAGMA) whose table functions are on a
  list (no read_csv, glob, query, checkpoint, ...) and which names no file, and the server runs it in a
  READ ONLY transaction on a cursor of its own, so a write that got past the check still fails in DuckDB.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerlab.errors import CampaignError, QueryError, ReadOnlyQueryError

if TYPE_CHECKING:
    import duckdb

_READS = {"SELECT", "EXPLAIN", "PRAGMA"}
_REFUSALS = ("read-only mode", "configuration has been locked", "disabled by configuration",
             "Cannot launch in-memory database in read-only mode")
# Table functions a query may call in the campaign's process: generators and catalog introspection.
_TABLE_FUNCTIONS = {
    "range", "generate_series", "unnest", "json_each", "json_tree", "repeat", "repeat_row",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies", "duckdb_functions",
    "duckdb_indexes", "duckdb_keywords", "duckdb_schemas", "duckdb_tables", "duckdb_types", "duckdb_views",
    "pragma_table_info", "pragma_show", "pragma_version", "pragma_database_size", "pragma_storage_info",
    "pragma_platform",
}
_PRAGMAS = {"table_info", "show", "show_tables", "show_tables_expanded", "database_size", "version",
            "storage_info", "platform", "database_list", "show_databases"}
_PRAGMA = re.compile(r"\s*PRAGMA\s+(\w+)\s*(\(\s*'[^']*'\s*\))?\s*;?\s*$", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*$")
_SNAPSHOT_HINT = "query a snapshot for that (`ledgerlab snapshot OUT`)"
# One in-memory connection, only for parsing (it never sees the ledger), shared under a lock. Not one per thread:
# a query-server thread ending as the interpreter exits would destroy its connection inside DuckDB's C++ frames,
# which aborts the process (SIGABRT). This one is the module's, destroyed by the main thread.
_parse_lock = threading.Lock()


@dataclass(frozen=True)
class QueryResult:
    """A query's column names and rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(path: str | os.PathLike[str], sql: str, wait_s: float | None = None) -> QueryResult:
    """Run one read-only statement against the ledger at `path` (through the running campaign, if one is)."""
    import duckdb

    from ledgerlab.storage.ledger import read_only_connection
    from ledgerlab.storage.remote import RemoteConnection

    upgrade_views_if_old(Path(path), wait_s)
    with read_only_connection(path, wait_s=wait_s) as con:
        statement = sql if isinstance(con, RemoteConnection) else _single_read(sql)
        try:
            cursor = con.execute(statement)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns, cursor.fetchall())
        except duckdb.Error as exc:
            raise as_query_error(exc) from None


@functools.cache
def _parse_connection() -> duckdb.DuckDBPyConnection:
    import duckdb

    return duckdb.connect(":memory:")


@contextmanager
def _parser() -> Iterator[duckdb.DuckDBPyConnection]:
    """The shared parsing connection, for this thread alone while the block runs."""
    with _parse_lock:
        yield _parse_connection()


def _statements(sql: str) -> list[Any]:
    import duckdb

    with _parser() as con:
        try:
            return list(con.extract_statements(sql))
        except duckdb.Error as exc:
            raise as_query_error(exc) from None


def _single_read(sql: str) -> str:
    """The one statement in `sql`, if it is a read; QueryError/ReadOnlyQueryError otherwise."""
    statements = _statements(sql)
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement, not {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READS:
        raise ReadOnlyQueryError(f"the ledger is read-only: {kind} statements are refused (use SELECT)")
    return str(statements[0].query)


def live_read(sql: str) -> str:
    """The one statement in `sql` if it may run on the campaign's own database; else the one-line refusal."""
    statement = _single_read(sql)
    kind = _statements(statement)[0].type.name
    if kind == "PRAGMA":
        match = _PRAGMA.match(statement)
        if match is None or match.group(1).lower() not in _PRAGMAS:
            raise ReadOnlyQueryError("the ledger is read-only: only introspection PRAGMAs (table_info, show_tables, "
                                     "database_size, ...) are answered while a campaign runs")
        return statement
    if kind == "EXPLAIN":
        inner = re.sub(r"^\s*EXPLAIN\s+", "", statement, flags=re.IGNORECASE)
        if re.match(r"\(?\s*ANALY[SZ]E\b", inner, flags=re.IGNORECASE):
            raise ReadOnlyQueryError(f"the ledger is read-only: EXPLAIN ANALYZE runs its statement; {_SNAPSHOT_HINT}")
        live_read(inner)
        return statement
    _check_sources(statement)
    return statement


def _check_sources(statement: str) -> None:
    """Refuse table functions off the list and FROM 'file' scans, anywhere in the statement's syntax tree."""
    with _parser() as con:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [statement]).fetchone()[0])  # type: ignore[index]
    if tree.get("error"):
        raise ReadOnlyQueryError(f"the ledger is read-only: this statement cannot be checked while a campaign runs "
                                 f"({tree.get('error_message')}); {_SNAPSHOT_HINT}")
    for kind, name in _sources(tree):
        if kind == "TABLE_FUNCTION" and name.lower() not in _TABLE_FUNCTIONS:
            raise ReadOnlyQueryError(f"the ledger is read-only: {name}() is not answered while a campaign runs "
                                     f"(it reads outside the ledger or acts on it); {_SNAPSHOT_HINT}")
        if kind == "BASE_TABLE" and not _NAME.match(name):
            raise ReadOnlyQueryError(f"the ledger is read-only: FROM {name!r} names a file, not a view; "
                                     f"{_SNAPSHOT_HINT}")


def _sources(node: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "TABLE_FUNCTION":
                found.append(("TABLE_FUNCTION", str((item.get("function") or {}).get("function_name", ""))))
            elif item.get("type") == "BASE_TABLE":
                found.append(("BASE_TABLE", str(item.get("table_name", ""))))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def as_query_error(exc: Exception) -> QueryError:
    """A DuckDB error as our one-line QueryError (ReadOnlyQueryError when DuckDB refused a write)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(marker in first for marker in _REFUSALS) or "read-only mode" in first:
        return ReadOnlyQueryError(f"the ledger is read-only: {first}")
    return QueryError(first)


def upgrade_views_if_old(path: Path, wait_s: float | None = None) -> None:
    """Re-create the views when the file's are older than this ledgerlab's (briefly opens it for writing).

    A running campaign installed its views when it opened the file, so nothing is done while one answers.
    """
    from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
    from ledgerlab.storage.remote import RemoteConnection
    from ledgerlab.storage.views import VIEWS_VERSION, has_meta, views_version

    with read_only_connection(path, wait_s=wait_s) as con:
        if isinstance(con, RemoteConnection):
            return
        stale = not has_meta(con) or views_version(con) < VIEWS_VERSION
    if stale:
        DuckDBLedger(path, wait_s=wait_s).close()  # opening installs the current views


def pick_campaign(con: Any, prefix: str | None) -> str:
    """The campaign id matching `prefix`, or the most recently started one."""
    if prefix is None:
        row = con.execute("SELECT campaign_id FROM events WHERE type = 'CampaignStarted' "
                          "ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            raise CampaignError("no campaign in this ledger yet; start one with `ledgerlab run`")
        return str(row[0])
    ids = [r[0] for r in con.execute("SELECT campaign_id FROM events WHERE starts_with(campaign_id, ?) "
                                     "GROUP BY campaign_id ORDER BY min(seq)", [prefix]).fetchall()]
    if prefix in ids:
        return prefix
    if not ids:
        known = [r[0] for r in con.execute("SELECT DISTINCT campaign_id FROM events").fetchall()]
        raise CampaignError(f"no campaign {prefix!r} (campaigns: {', '.join(sorted(known)) or 'none'})")
    if len(ids) > 1:
        raise CampaignError(f"campaign prefix {prefix!r} is ambiguous: {', '.join(ids)}; give more characters")
    return str(ids[0])
