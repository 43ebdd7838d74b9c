"""Queries while a campaign runs go through its process (storage/server.py); snapshots for other tools.

The in-process tests run a server on a DuckDBLedger in this process and query it as another process would
(the CLI, the Python API); the process test runs a real `ledgerlab run marketing` and attacks it with readers
that hold a connection longer than the lock wait, run long queries, open the file directly, and are killed
with -9, and checks the campaign never notices. Every wait is on a condition (the machine is loaded).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import host_processes
import pytest
from fixtures_events import append_stream, fixture_stream
from host_processes import DEADLINE_S, until
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.project import Project
from ledgerlab.errors import LedgerError, QueryError, ReadOnlyQueryError
from ledgerlab.storage import wire
from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
from ledgerlab.storage.query import run_query
from ledgerlab.storage.remote import RemoteConnection
from ledgerlab.storage.server import serve_readers
from ledgerlab.storage.snapshot import OLDEST_READER, snapshot
from ledgerlab.storage.verify import verify_ledger

pytestmark = pytest.mark.skipif(not wire.supported(), reason="no Unix sockets on this system")
cli = CliRunner(env={"COLUMNS": "500"})
SLOW_SQL = "SELECT count(*) FROM range(100000000000) a, range(1000000) b WHERE a.range + b.range < 0"


def invoke(*args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    with DuckDBLedger(Project.at(tmp_path).ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    return tmp_path


@pytest.fixture
def live(project: Path) -> Iterator[DuckDBLedger]:
    """The project's ledger held open by this process, answering queries on its socket, as a runner does."""
    with DuckDBLedger(Project.at(project).ledger_path) as store, serve_readers(store):
        yield store


# ------------------------------------------------------------------------------- in-process server


def test_answers_match_the_file_and_the_file_stays_closed_to_others(project: Path) -> None:
    path = Project.at(project).ledger_path
    queries = ["SELECT * FROM events ORDER BY seq", "SELECT * FROM runs ORDER BY run_id",
               "SELECT * FROM leaderboard ORDER BY ALL", "DESCRIBE events", "PRAGMA table_info('runs')"]
    from_file = {q: run_query(path, q) for q in queries}
    with DuckDBLedger(path) as store, serve_readers(store):
        assert wire.socket_path(path).exists()
        with read_only_connection(path) as con:
            assert isinstance(con, RemoteConnection)
        for q in queries:
            assert run_query(path, q) == from_file[q], q  # same values and Python types (timestamps, JSON, NULL)
        other = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)",
                                str(path)], capture_output=True, text=True, timeout=DEADLINE_S)
        assert other.returncode != 0 and "lock" in other.stderr  # a third-party reader is refused, not the writer
        store.append("camp-min", [], expected_version=store.version("camp-min"))  # the writer is untouched
    assert not wire.socket_path(path).exists()


@pytest.mark.parametrize("statement", [
    "INSERT INTO events SELECT * FROM events", "UPDATE events SET type = 'x'", "DELETE FROM events",
    "DROP VIEW runs", "CREATE TABLE t (a INT)", "CREATE TEMP TABLE t (a INT)", "ATTACH 'other.duckdb'",
    "COPY events TO 'out.csv'", "INSTALL httpfs", "LOAD httpfs", "SET threads = 1", "PRAGMA threads = 1",
    "SELECT * FROM read_csv('/etc/passwd')", "CHECKPOINT", "SELECT * FROM checkpoint()",
    "SELECT * FROM 'out.csv'", "SELECT * FROM query('SELECT 1')", "EXPLAIN ANALYZE SELECT * FROM events",
    "SELECT 1 WHERE EXISTS (SELECT * FROM glob('*'))", "USE memory", "SET VARIABLE x = 1",
    "CALL pragma_version()",
])
def test_live_server_refuses_writes(project: Path, live: DuckDBLedger, statement: str) -> None:
    code, out = invoke("sql", statement, "--dir", str(project))
    assert code == 2 and "read-only" in out and len(out.strip().splitlines()) == 1, out
    assert not (project / "out.csv").exists() and not (project / "other.duckdb").exists()
    assert run_query(live.path, "SELECT current_setting('threads') > 0 AS ok").rows == [(True,)]


def test_reads_that_are_allowed(project: Path, live: DuckDBLedger) -> None:
    for statement in ("SHOW TABLES", "SUMMARIZE runs", "EXPLAIN SELECT * FROM runs", "FROM duckdb_views()",
                      "SELECT * FROM range(3) r, unnest([1, 2]) u", "WITH x AS (SELECT 1 AS a) SELECT a FROM x"):
        code, out = invoke("sql", statement, "--dir", str(project))
        assert code == 0, (statement, out)


def test_cli_readers_work_through_the_server(project: Path) -> None:
    commands = [("status", "--format", "json"), ("log", "--limit", "5"), ("show", "1"), ("verify",),
                ("export", "--format", "csv"), ("sql", "SELECT count(*) FROM events")]
    before = {c: invoke(*c, "--dir", str(project)) for c in commands}
    with DuckDBLedger(Project.at(project).ledger_path) as store, serve_readers(store):
        for command in commands:
            code, out = invoke(*command, "--dir", str(project))
            assert code == before[command][0] == 0, (command, out)
            if command[0] != "status":  # status measures elapsed time
                assert out == before[command][1], command
            else:
                assert json.loads(out)["campaign_id"] == json.loads(before[command][1])["campaign_id"]


def test_long_queries_time_out_and_big_results_are_capped(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERLAB_QUERY_TIMEOUT", "1")
    monkeypatch.setenv("LEDGERLAB_QUERY_MAX_MB", "0.01")
    path = Project.at(project).ledger_path
    with DuckDBLedger(path) as store, serve_readers(store):
        code, out = invoke("sql", SLOW_SQL, "--dir", str(project))
        assert code == 2 and "past its 1 s limit" in out and len(out.strip().splitlines()) == 1, out
        with pytest.raises(QueryError, match="passed 0 MiB"):
            run_query(path, "SELECT * FROM range(100000)")
        assert run_query(path, "SELECT count(*) FROM events").rows == [(len(fixture_stream()),)]
        with RemoteConnection.connect(path) as con:  # type: ignore[union-attr]
            until("nothing left running", lambda: con.ping()["queries"] == 0)


def test_a_reader_that_hangs_up_has_its_query_interrupted(project: Path) -> None:
    path = Project.at(project).ledger_path
    with DuckDBLedger(path) as store, serve_readers(store):
        sock = socket.socket(socket.AF_UNIX)
        with wire.address(wire.socket_path(path)) as name:
            sock.connect(name)
        sock.sendall(wire.dumps({"op": "query", "sql": SLOW_SQL}))  # the default limit is 30 s
        with RemoteConnection.connect(path) as con:  # type: ignore[union-attr]
            until("the slow query running", lambda: con.ping()["queries"] == 1)
            sock.close()  # what kill -9 does to the reader's end
            until("the slow query interrupted", lambda: con.ping()["queries"] == 0)


def test_stale_socket_and_long_paths(tmp_path: Path) -> None:
    folder = tmp_path / ("deep-" * 20)  # the socket's path is past the 108 bytes sockaddr_un holds
    path = Project.at(folder).ledger_path
    with DuckDBLedger(path) as store:
        append_stream(store, fixture_stream())
    with DuckDBLedger(path) as store, serve_readers(store):
        with read_only_connection(path) as con:
            assert isinstance(con, RemoteConnection)
            assert con.execute("SELECT count(*) FROM events").fetchone() == (len(fixture_stream()),)
    dead = socket.socket(socket.AF_UNIX)  # what a runner killed with -9 leaves: a socket nobody accepts on
    with wire.address(wire.socket_path(path)) as name:
        dead.bind(name)
    try:
        with read_only_connection(path) as con:
            assert not isinstance(con, RemoteConnection)  # the file itself
        with DuckDBLedger(path) as store, serve_readers(store):  # the next runner replaces the stale socket
            assert run_query(path, "SELECT count(*) FROM events").rows == [(len(fixture_stream()),)]
    finally:
        dead.close()


def test_a_query_in_flight_when_the_campaign_stops_is_answered_from_the_file(project: Path) -> None:
    path = Project.at(project).ledger_path
    store = DuckDBLedger(path)
    server = serve_readers(store)
    server.__enter__()
    con = RemoteConnection.connect(path)
    assert con is not None
    server.__exit__(None, None, None)
    store.close()
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(len(fixture_stream()),)]
    with pytest.raises(ReadOnlyQueryError):
        con.execute("DELETE FROM events")
    con.close()


# ------------------------------------------------------------------------------------------ snapshots


def test_snapshot_with_and_without_a_campaign(project: Path, tmp_path: Path) -> None:
    path = Project.at(project).ledger_path
    code, out = invoke("snapshot", str(tmp_path / "cold.duckdb"), "--dir", str(project))
    assert code == 0 and "taken by the ledger file" in out, out
    with DuckDBLedger(path) as store, serve_readers(store):
        code, out = invoke("snapshot", str(tmp_path / "hot.duckdb"), "--dir", str(project))
        assert code == 0 and "taken by the running campaign" in out, out
        code, out = invoke("snapshot", str(tmp_path / "hot.duckdb"), "--dir", str(project))
        assert code == 2 and "exists" in out and len(out.strip().splitlines()) == 1, out
        assert invoke("snapshot", str(tmp_path / "hot.duckdb"), "--force", "--dir", str(project))[0] == 0
    for name in ("cold.duckdb", "hot.duckdb"):
        copy = tmp_path / name
        assert verify_ledger(copy).ok
        assert run_query(copy, "SELECT * FROM leaderboard ORDER BY ALL") == run_query(path, "SELECT * FROM leaderboard ORDER BY ALL")
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(LedgerError, match="no folder"):
        snapshot(path, tmp_path / "missing" / "x.duckdb")


OLD_READER = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in ["events", *views]}
print(json.dumps({"version": duckdb.__version__, "counts": counts}))
"""


def test_snapshot_opens_with_the_oldest_supported_duckdb(project: Path, tmp_path: Path) -> None:
    """$LEDGERLAB_OLDEST_DUCKDB: a folder with that DuckDB installed (`pip install --target`); .ci/run makes it."""
    folder = os.environ.get("LEDGERLAB_OLDEST_DUCKDB")
    if not folder:
        if os.environ.get("CI"):
            pytest.fail("CI must set LEDGERLAB_OLDEST_DUCKDB (.ci/run installs the oldest supported duckdb)")
        pytest.skip(f"LEDGERLAB_OLDEST_DUCKDB is not set (pip install --target DIR duckdb=={OLDEST_READER})")
    out = tmp_path / "snap.duckdb"
    with DuckDBLedger(Project.at(project).ledger_path) as store, serve_readers(store):
        snapshot(store.path, out)
    done = subprocess.run([sys.executable, "-c", OLD_READER, str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": folder}, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["version"] == OLDEST_READER
    expected = {name: run_query(out, f"SELECT count(*) FROM {name}").rows[0][0] for name in answer["counts"]}
    assert answer["counts"] == expected and len(expected) == 8


# --------------------------------------------------------------------------- a real campaign under attack

# A reader process: connects to the campaign's socket, says so, then runs a query nobody will answer in time.
LOCK_WAIT_S = 0.5  # the campaign's lock wait in this test: every attack below outlasts it
HANGING_READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ledgerlab.storage.remote import RemoteConnection
    con = RemoteConnection.connect(Path(sys.argv[1]))
    print("connected" if con else "no campaign", flush=True)
    con.execute(sys.argv[2])
""")


class Runner(host_processes.Runner):
    """A `ledgerlab run` whose progress lines are counted as they come (not asked of the ledger: a reader's
    query may wait behind the slow ones this test runs)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        super().__init__(folder, "run", "marketing", "--max-hypotheses", "300", "--option",
                         "visitors_per_run=1000000", env=env)

    def finished_runs(self) -> int:
        return sum(" finished: " in line for line in list(self.lines))

    def progress(self, more: int) -> None:
        start = self.finished_runs()
        until(f"{more} more finished runs", lambda: self.finished_runs() >= start + more, self.proc)


def test_no_reader_can_stop_a_running_campaign(tmp_path: Path) -> None:
    """Lock wait 0.5 s: each attack lasts longer than that while the campaign goes on writing."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LEDGERLAB_LOCK_WAIT": str(LOCK_WAIT_S),
           "LEDGERLAB_QUERY_TIMEOUT": "600"}
    runner = Runner(tmp_path, env)
    path = Project.at(tmp_path).ledger_path
    readers: list[subprocess.Popen[str]] = []
    try:
        runner.progress(1)
        # 1. A connection held open, idle, across more than the lock wait's worth of campaign progress.
        held = RemoteConnection.connect(path)
        assert held is not None
        # 2. The file opened directly, as DuckDB's CLI or a notebook would: refused at once, every time.
        for _ in range(3):
            with pytest.raises(duckdb.IOException, match="lock"):
                duckdb.connect(str(path), read_only=True)
        # 3. Long queries in two readers (one running, one waiting its turn), then both killed with -9.
        for _ in range(2):
            reader = subprocess.Popen([sys.executable, "-c", HANGING_READER, str(path), SLOW_SQL], env=env,
                                      stdout=subprocess.PIPE, text=True)
            readers.append(reader)
            assert reader.stdout is not None and reader.stdout.readline().strip() == "connected"
        until("a slow query running", lambda: held.ping()["queries"] >= 1, runner.proc)
        slow_since = time.monotonic()
        runner.progress(3)  # the campaign writes while it runs, for longer than a writer would wait on a lock
        until("the slow queries past the lock wait", lambda: time.monotonic() - slow_since > 2 * LOCK_WAIT_S,
              runner.proc)
        for reader in readers:
            reader.send_signal(signal.SIGKILL)
            reader.wait()
        until("the killed readers' queries interrupted", lambda: held.ping()["queries"] == 0, runner.proc)
        runner.progress(2)
        # 4. A long query of the held connection, stopped at its limit.
        with pytest.raises(QueryError, match="past its 1 s limit"):
            held.execute(SLOW_SQL, timeout_s=1)
        runner.progress(2)
        assert held.execute("SELECT count(*) FROM events").fetchone()[0] > 0  # type: ignore[index]
        held.close()
        assert runner.proc.poll() is None  # the campaign never noticed any of it
        runner.proc.send_signal(signal.SIGINT)
        assert runner.proc.wait(timeout=DEADLINE_S) == 0, "".join(runner.lines)
    finally:
        for reader in readers:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        runner.stop()
    output = " ".join("".join(runner.lines).split())
    assert "stayed locked" not in output and "paused: interrupted (SIGINT)" in output, output
    assert not wire.socket_path(path).exists()
    assert verify_ledger(path).ok
