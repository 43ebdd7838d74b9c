"""The running campaign answers other processes' read-only queries, so no reader ever locks the ledger file.

    with DuckDBLedger(path) as store, serve_readers(store):   # cli/session.py, for the life of a campaign
        ...

DuckDB lets one process open a file for writing and then no other process can open it at all. Under the
lease protocol (storage/ledger.py) the writer closes the file for a waiting reader, so a reader that keeps it
open (a notebook, a 30 s query) kept the campaign from writing until its lock wait ran out and it stopped.
With `serve_readers` the campaign's process keeps the file open for the whole campaign and answers queries on
the socket `<ledger>.sock` (storage/wire.py) from threads of its own: each query gets its own cursor (a second
connection to the same open database), so DuckDB runs it beside the writer's appends on a snapshot of its
own (MVCC) and the writer never waits for it:
- the writer's lock is taken only to create and to close a cursor (microseconds), never while a query runs;
- DuckDB runs a query without Python's GIL; rows are converted and sent in chunks of CHUNK_ROWS, each
  holding the GIL for about a millisecond, so the writer's thread gets it between chunks;
- the database runs with one DuckDB thread while it serves and at most MAX_RUNNING queries run at once (half
  the cores; the others wait their turn within their deadline), so readers leave the campaign's runs cores;
- a query runs in a READ ONLY transaction after `live_read` (storage/query.py) accepted it;
- each query has a deadline (`LEDGERLAB_QUERY_TIMEOUT`, default 30 s): a watchdog interrupts it there, or at
  once when its client hangs up (a reader killed with -9 closes its socket), so no reader keeps a
  transaction open (which would hold back the writer's WAL checkpoints) for longer than that;
- a result is capped at `LEDGERLAB_QUERY_MAX_MB` (default 256) of JSON, and at most MAX_CLIENTS connections
  are served.
A process that opens the file directly while the campaign runs (DuckDB's own CLI, a notebook's
`duckdb.connect`) gets DuckDB's "Conflicting lock is held" at once and the campaign does not notice; such tools
should read a snapshot (storage/snapshot.py), which this server also writes on request.
"""

from __future__ import annotations

import io
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerlab.errors import LedgerlabError, QueryError
from ledgerlab.storage import wire

if TYPE_CHECKING:
    import duckdb

    from ledgerlab.storage.ledger import DuckDBLedger

CHUNK_ROWS = 1000
# Queries executing at once. While it serves, the database runs with `threads = 1`: each query then works on
# its own handler thread only, so readers use at most MAX_RUNNING cores and the campaign's runs keep the rest.
MAX_RUNNING = max(1, (os.cpu_count() or 2) // 2)
MAX_CLIENTS = 32
IDLE_S = 300.0  # a connection that sends nothing for this long is closed
SNAPSHOT_TIMEOUT_S = 600.0


def query_timeout_s() -> float:
    """The longest a query may take in the campaign's process: $LEDGERLAB_QUERY_TIMEOUT seconds, else 30."""
    return float(os.environ.get("LEDGERLAB_QUERY_TIMEOUT", 30))


def max_result_bytes() -> int:
    """The largest result served: $LEDGERLAB_QUERY_MAX_MB MiB of JSON, else 256 MiB."""
    return int(float(os.environ.get("LEDGERLAB_QUERY_MAX_MB", 256)) * (1 << 20))


@contextmanager
def serve_readers(ledger: DuckDBLedger) -> Iterator[QueryServer | None]:
    """Answer queries on the ledger's socket for the block, the file held open; None where there are no sockets."""
    if not wire.supported():
        yield None
        return
    server = QueryServer(ledger)
    server.start()
    try:
        yield server
    finally:
        server.close()


class QueryServer:
    """Threads that answer the socket's requests with cursors of the writer's open database."""

    def __init__(self, ledger: DuckDBLedger) -> None:
        self.ledger = ledger
        self.path = wire.socket_path(ledger.path)
        self.timeout_s, self.max_bytes = query_timeout_s(), max_result_bytes()
        self.running = threading.BoundedSemaphore(MAX_RUNNING)
        self.snapshotting = threading.Lock()
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        self._clients: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._closing = False
        self._busy = 0  # requests between enter() and leave_request(): close() waits for them
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Hold the file open and listen (a stale socket from a runner killed with -9 is replaced)."""
        self.ledger.keep_open(True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        with wire.address(self.path) as name:
            self._server = _Server(name, self)
        os.chmod(self.path, 0o600)  # only this user's processes may ask
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="ledger-queries")
        self._thread.start()

    def close(self) -> None:
        """Stop listening, hang up on every client, interrupt the queries still running, let the file go.

        A client that loses its connection runs its query again on the file (storage/remote.py).
        """
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        with self._guard:
            self._closing = True
            clients = list(self._clients)
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # Wait for every request to leave DuckDB: a thread still in a query when the interpreter exits is
        # ended inside DuckDB's C++ frames, which aborts the process (SIGABRT after a clean pause).
        deadline = time.monotonic() + 5.0
        while (self._interrupt_all() or self._requests()) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.ledger.keep_open(False)

    # --- cursors

    def open_cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self.ledger.reader_cursor()
        with self._guard:
            self._cursors.add(cursor)
        return cursor

    def close_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._guard:
            self._cursors.discard(cursor)
        self.ledger.close_cursor(cursor)

    def active_queries(self) -> int:
        """Queries (and snapshots) holding a cursor now."""
        with self._guard:
            return len(self._cursors)

    def _interrupt_all(self) -> bool:
        with self._guard:
            cursors = list(self._cursors)
        for cursor in cursors:
            cursor.interrupt()
        return bool(cursors)

    # --- requests

    def enter(self) -> bool:
        """Count a query or snapshot request in; False once closing (the client then reads the file)."""
        with self._guard:
            if self._closing:
                return False
            self._busy += 1
            return True

    def leave_request(self) -> None:
        with self._guard:
            self._busy -= 1

    def _requests(self) -> int:
        with self._guard:
            return self._busy

    # --- clients

    def admit(self, sock: socket.socket) -> bool:
        with self._guard:
            if self._closing or len(self._clients) >= MAX_CLIENTS:
                return False
            self._clients.add(sock)
            return True

    def leave(self, sock: socket.socket) -> None:
        with self._guard:
            self._clients.discard(sock)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: str, owner: QueryServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: requests one at a time until it hangs up."""

    server: _Server
    timeout = IDLE_S

    def handle(self) -> None:
        owner = self.server.owner
        if not owner.admit(self.connection):
            if not owner._closing:  # closing: hang up, so the client reads the file instead
                _send(self.wfile, _error(QueryError(f"the campaign is answering {MAX_CLIENTS} readers already; retry")))
            return
        try:
            while True:
                self.connection.settimeout(IDLE_S)
                line = self.rfile.readline(wire.MAX_LINE + 1)
                if not line or not line.endswith(b"\n"):
                    if line:
                        _send(self.wfile, _error(QueryError("request too long")))
                    return
                self._answer(owner, line)
        except (OSError, ValueError):
            return  # the client went away or timed out: nothing to clean beyond the query's own finally
        finally:
            owner.leave(self.connection)

    def _answer(self, owner: QueryServer, line: bytes) -> None:
        try:
            request = wire.loads(line)
        except ValueError:
            _send(self.wfile, _error(QueryError("a request is one JSON object per line")))
            return
        op = request.get("op")
        if op == "ping":
            _send(self.wfile, {"ok": True, "pid": os.getpid(), "queries": owner.active_queries()})
        elif op in ("query", "snapshot"):
            if not owner.enter():  # closing: hang up, so the client reads the file instead
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                if op == "query":
                    _Query(owner, self.connection, self.wfile, request).answer()
                else:
                    _send(self.wfile, _snapshot(owner, request))
            finally:
                owner.leave_request()
        else:
            _send(self.wfile, _error(QueryError(f"unknown op {op!r}")))


class _Query:
    """One query: checked, run in a read-only transaction under a watchdog, streamed back in chunks."""

    def __init__(self, owner: QueryServer, sock: socket.socket, out: io.BufferedIOBase, request: dict[str, Any]) -> None:
        self.owner, self.sock, self.out = owner, sock, out
        self.sql = str(request.get("sql", ""))
        self.params = request.get("params")
        asked = request.get("timeout_s")
        limit = owner.timeout_s if not isinstance(asked, (int, float)) else min(float(asked), owner.timeout_s)
        self.deadline = time.monotonic() + max(limit, 0.0)
        self.limit = limit

    def answer(self) -> None:
        import duckdb

        from ledgerlab.storage.query import as_query_error, live_read

        try:
            statement = live_read(self.sql)
        except LedgerlabError as exc:
            _send(self.out, _error(exc))
            return
        if not self.owner.running.acquire(timeout=max(self.deadline - time.monotonic(), 0.0)):
            _send(self.out, _error(QueryError(self._late("waited for other queries"))))
            return
        try:
            cursor = self.owner.open_cursor()
        except LedgerlabError:  # the campaign is closing its ledger: hang up, the client reads the file
            self.owner.running.release()
            self.sock.shutdown(socket.SHUT_RDWR)
            return
        watchdog = _Watchdog(cursor, self.sock, self.deadline)
        try:
            self._run(cursor, statement)
        except duckdb.InterruptException:
            reason = "the client went away" if watchdog.client_gone else self._late("ran")
            _send(self.out, _error(QueryError(reason)))
        except duckdb.Error as exc:
            _send(self.out, _error(as_query_error(exc)))
        except LedgerlabError as exc:
            _send(self.out, _error(exc))
        finally:
            watchdog.stop()
            self.owner.close_cursor(cursor)  # ends the read-only transaction
            self.owner.running.release()

    def _late(self, what: str) -> str:
        return (f"the query {what} past its {self.limit:g} s limit in the running campaign "
                f"(LEDGERLAB_QUERY_TIMEOUT); add a LIMIT, or query a snapshot (`ledgerlab snapshot OUT`)")

    def _run(self, cursor: duckdb.DuckDBPyConnection, statement: str) -> None:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        cursor.execute(statement, self.params)
        columns = [[d[0], str(d[1])] for d in cursor.description or []]
        sent = _send(self.out, {"ok": True, "columns": columns})
        while columns:
            rows = cursor.fetchmany(CHUNK_ROWS)
            if not rows:
                break
            line = wire.dumps({"rows": rows})
            sent += len(line)
            if sent > self.owner.max_bytes:
                raise QueryError(f"the result passed {self.owner.max_bytes >> 20} MiB (LEDGERLAB_QUERY_MAX_MB); "
                                 "add a LIMIT, or query a snapshot (`ledgerlab snapshot OUT`)")
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))  # a client that stops reading
            self.out.write(line)
        _send(self.out, {"end": True})


class _Watchdog:
    """Interrupts a query at its deadline, or as soon as its client hangs up."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, sock: socket.socket | None, deadline: float) -> None:
        self.cursor, self.sock, self.deadline = cursor, sock, deadline
        self.client_gone = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="ledger-query-watchdog")
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or self._hung_up(min(remaining, 0.1)):
                self.cursor.interrupt()  # again each round: an interrupt before execute starts is lost
                self._done.wait(0.05)
        return

    def _hung_up(self, wait_s: float) -> bool:
        """True when the client closed its end (it sends nothing while it waits for an answer)."""
        if self.sock is None:
            self._done.wait(wait_s)
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], wait_s)
            if readable and self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                self.client_gone = True
            elif readable:  # the client's next request, sent as this answer ended: nothing to watch for
                self._done.wait(wait_s)
        except BlockingIOError:
            return False
        except OSError:
            self.client_gone = True
        return self.client_gone

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _snapshot(owner: QueryServer, request: dict[str, Any]) -> dict[str, Any]:
    """Write the snapshot the client asked for (one at a time) with a cursor of the open database."""
    from ledgerlab.storage.snapshot import copy_database

    out = Path(str(request.get("out", "")))
    if not out.is_absolute() or out.exists() or not out.parent.is_dir():
        return _error(LedgerlabError(f"a snapshot goes to a new file in an existing folder, not {out}"))
    with owner.snapshotting:
        cursor = owner.open_cursor()
        watchdog = _Watchdog(cursor, None, time.monotonic() + SNAPSHOT_TIMEOUT_S)
        try:
            events, head = copy_database(cursor, out)
        except Exception as exc:  # noqa: BLE001 - any failure is the client's one-line error, not the writer's
            return _error(LedgerlabError(f"snapshot failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"))
        finally:
            watchdog.stop()
            owner.close_cursor(cursor)
    return {"ok": True, "events": events, "head_seq": head}


def _error(exc: Exception) -> dict[str, Any]:
    return {"ok": False, "error": str(exc), "kind": type(exc).__name__}


def _send(out: io.BufferedIOBase, message: dict[str, Any]) -> int:
    line = wire.dumps(message)
    out.write(line)
    return len(line)
