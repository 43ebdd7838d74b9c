"""A reader's side of the running campaign's socket (storage/server.py), shaped like a DuckDB connection.

    con = RemoteConnection.connect(ledger_path)       # None when no campaign answers there
    rows = con.execute("SELECT * FROM runs WHERE campaign_id = ?", ["c1"]).fetchall()

Each `execute` sends one request and reads the whole answer before it returns, so a caller that stops
reading never holds the campaign's query open. If the campaign ends (or dies) while it answers, the query is
run again on the file opened read-only, where it now can be (reads are idempotent).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ledgerlab import errors
from ledgerlab.storage import wire

_SLACK_S = 30.0  # beyond the server's own query limit, before a reader gives up on an answer


class RemoteResult:
    """The rows of one answered query, with a DB-API `description` (name, DuckDB type, then five Nones)."""

    def __init__(self, columns: list[list[str]], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(name, type_name, None, None, None, None, None) for name, type_name in columns]
        self._rows, self._next = rows, 0

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._next:self._next + size]
        self._next += len(rows)
        return rows


class RemoteConnection:
    """Queries answered by the campaign that holds the ledger open; the file itself once it stops answering."""

    def __init__(self, sock: socket.socket, ledger_path: Path) -> None:
        self._sock, self._file = sock, sock.makefile("rb")
        self.ledger_path = ledger_path
        self._fallback: Any = None

    @classmethod
    def connect(cls, ledger_path: Path) -> RemoteConnection | None:
        """A connection to the campaign answering for `ledger_path`, or None (no socket, or a stale one)."""
        path = wire.socket_path(ledger_path)
        if not wire.supported() or not path.exists():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with wire.address(path) as name:
                sock.connect(name)
        except OSError:  # refused: the socket of a runner that died (the next runner replaces it)
            sock.close()
            return None
        return cls(sock, ledger_path)

    def execute(self, sql: str, params: Any = None, timeout_s: float | None = None) -> Any:
        """Run one read-only query in the campaign's process (its limits: storage/server.py)."""
        if self._fallback is not None:
            return self._local(sql, params)
        request: dict[str, Any] = {"op": "query", "sql": sql, "params": params}
        if timeout_s is not None:
            request["timeout_s"] = timeout_s
        try:
            return self._ask(request)
        except (ConnectionError, EOFError):
            self._fall_back()
            return self._local(sql, params)

    def snapshot(self, out: Path) -> dict[str, Any]:
        """Have the campaign write a snapshot of the ledger to `out` (a new file): {"events", "head_seq"}."""
        from ledgerlab.storage.server import SNAPSHOT_TIMEOUT_S

        self._send({"op": "snapshot", "out": str(out)}, SNAPSHOT_TIMEOUT_S + _SLACK_S)
        return self._check(self._read())

    def ping(self) -> dict[str, Any]:
        """The campaign's pid and how many queries it is running now."""
        self._send({"op": "ping"}, _SLACK_S)
        return self._check(self._read())

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        self._file.close()
        self._sock.close()

    def __enter__(self) -> RemoteConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wire

    def _ask(self, request: dict[str, Any]) -> RemoteResult:
        from ledgerlab.storage.server import query_timeout_s

        self._send(request, query_timeout_s() + _SLACK_S)
        head = self._check(self._read())
        columns: list[list[str]] = head.get("columns", [])
        types = [t for _, t in columns]
        rows: list[tuple[Any, ...]] = []
        while True:
            message = self._check(self._read())
            if message.get("end"):
                return RemoteResult(columns, rows)
            rows.extend(wire.decode_rows(types, message.get("rows", [])))

    def _send(self, request: dict[str, Any], timeout_s: float) -> None:
        self._sock.settimeout(timeout_s)
        try:
            self._sock.sendall(wire.dumps(request))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionError(str(exc)) from None

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except TimeoutError:
            raise errors.QueryError("the running campaign did not answer in time; retry") from None
        except ConnectionResetError as exc:
            raise ConnectionError(str(exc)) from None
        if not line.endswith(b"\n"):
            raise EOFError("the campaign closed the connection")
        return wire.loads(line)

    @staticmethod
    def _check(message: dict[str, Any]) -> dict[str, Any]:
        if message.get("ok", True):
            return message
        kind = getattr(errors, str(message.get("kind")), None)
        cls = kind if isinstance(kind, type) and issubclass(kind, errors.LedgerlabError) else errors.QueryError
        raise cls(str(message.get("error", "the query failed")))

    # --- after the campaign stopped answering

    def _fall_back(self) -> None:
        from ledgerlab.storage.ledger import open_read_only

        self._fallback = open_read_only(self.ledger_path)

    def _local(self, sql: str, params: Any) -> Any:
        if isinstance(self._fallback, RemoteConnection):  # a new campaign began answering
            return self._fallback.execute(sql, params)
        import duckdb

        from ledgerlab.storage.query import _single_read, as_query_error

        try:
            return self._fallback.execute(_single_read(sql), params)
        except duckdb.Error as exc:
            raise as_query_error(exc) from None
