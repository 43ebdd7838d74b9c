"""The derived tables: written with their events in one transaction, backfilled on open, equal to a rebuild."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from fixtures_events import append_stream, fixture_stream

from ledgerlab.storage import events as ev
from ledgerlab.storage import ledger as ledger_module
from ledgerlab.storage.derived import DERIVED, HYPOTHESIS_EVENTS, RUN_EVENTS, Derived
from ledgerlab.storage.ledger import DuckDBLedger, insert_events, read_only_connection
from ledgerlab.storage.schema import EVENTS_DDL, META_DDL
from ledgerlab.storage.snapshot import snapshot
from ledgerlab.storage.verify import verify_report
from ledgerlab.storage.views import VIEWS, VIEWS_VERSION, views_version


def mismatches(con: duckdb.DuckDBPyConnection, derived: Derived = RUN_EVENTS) -> tuple[int, int, int]:
    """(rows of the table, rows missing from it, rows it has that a rebuild from events would not)."""
    rebuilt, table = f"SELECT * FROM ({derived.select()})", derived.table
    missing = con.execute(f"SELECT count(*) FROM ({rebuilt} EXCEPT ALL SELECT * FROM {table})").fetchall()
    extra = con.execute(f"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT ALL {rebuilt})").fetchall()
    total = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return total[0][0], missing[0][0], extra[0][0]


def all_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """(missing, extra) of every derived table."""
    return [mismatches(con, derived)[1:] for derived in DERIVED]


def view_rows(path: Path) -> dict[str, list[tuple]]:
    """Every view's rows, sorted, times left out (two ledgers of one stream were written at different times)."""
    with read_only_connection(path) as con:
        return {name: sorted((tuple(None if isinstance(v, datetime) else v for v in row)
                              for row in con.execute(f"SELECT * FROM {name}").fetchall()), key=repr)
                for name in VIEWS}


def old_ledger(path: Path, stream: list[tuple[str, ev.Event]]) -> None:
    """A ledger as a ledgerlab before `run_events` wrote it: events, views version 9, no derived table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(EVENTS_DDL)
    con.execute(META_DDL)
    con.execute("INSERT INTO ledger_meta (key, value) VALUES ('views_version', '9')")
    con.execute("CREATE VIEW runs AS SELECT payload->>'run_id' AS run_id FROM events WHERE type = 'RunStarted'")
    seq, head, versions = 0, ev.GENESIS_HASH, {}
    for campaign, event in stream:
        rows = ev.seal(campaign, [event], first_seq=seq + 1, first_version=versions.get(campaign, 0) + 1,
                       prev_hash=head)
        insert_events(con, rows)
        seq, head, versions[campaign] = rows[-1].seq, rows[-1].hash, rows[-1].version
    con.close()


def test_appends_derive_their_rows(ledger_path: Path) -> None:
    with DuckDBLedger(ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
        ledger.append("batch", [ev.RunStarted(run_id="x", candidate_id="c", seed=1),
                                ev.RunFinished(run_id="x", value=1.0, duration_s=2.0)], 0)
    with read_only_connection(ledger_path) as con:
        assert all_mismatches(con) == [(0, 0), (0, 0)]
        runs = dict(con.execute("SELECT type, count(*) FROM run_events GROUP BY type").fetchall())
        links = dict(con.execute("SELECT type, count(*) FROM hypothesis_events GROUP BY type").fetchall())
    assert runs == {"RunStarted": 13, "RunFinished": 10, "RunFailed": 1}
    assert links == {"HypothesisProposed": 6, "PatchRejected": 1, "CandidateCreated": 4, "VerdictReached": 3,
                     "IncumbentChanged": 2}


def test_an_old_ledger_is_backfilled_on_open_and_reads_the_same(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh" / "ledger.duckdb", tmp_path / "old" / "ledger.duckdb"
    with DuckDBLedger(fresh) as ledger:
        append_stream(ledger, fixture_stream())
    old_ledger(old, fixture_stream())
    snap = tmp_path / "snap.duckdb"
    snapshot(old, snap)  # read-only, before any writer: the snapshot derives the table itself
    with DuckDBLedger(old):
        pass
    for path in (old, snap):
        with read_only_connection(path) as con:
            assert views_version(con) == VIEWS_VERSION
            assert all_mismatches(con) == [(0, 0), (0, 0)]
        assert view_rows(path) == view_rows(fresh)


def test_events_an_older_writer_appended_are_backfilled(ledger_path: Path) -> None:
    stream = fixture_stream()
    with DuckDBLedger(ledger_path) as ledger:
        append_stream(ledger, stream[:20])
        seq, head = ledger.head()
    con = duckdb.connect(str(ledger_path))  # an older ledgerlab appends: events only
    versions: dict[str, int] = {}
    for campaign, event in stream[20:]:
        version = versions.get(campaign) or con.execute(
            "SELECT max(version) FROM events WHERE campaign_id = ?", [campaign]).fetchall()[0][0] or 0
        rows = ev.seal(campaign, [event], first_seq=seq + 1, first_version=version + 1, prev_hash=head)
        insert_events(con, rows)
        seq, head, versions[campaign] = rows[-1].seq, rows[-1].hash, rows[-1].version
    assert mismatches(con)[1] > 0 and mismatches(con, HYPOTHESIS_EVENTS)[1] > 0
    con.close()
    with DuckDBLedger(ledger_path):
        pass
    with read_only_connection(ledger_path) as con:
        assert all_mismatches(con) == [(0, 0), (0, 0)]


def test_a_failed_derivation_appends_no_event(ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with DuckDBLedger(ledger_path) as ledger:
        ledger.append("a", [ev.RunStarted(run_id="r", candidate_id="c", seed=1)], 0)

        def broken(con: duckdb.DuckDBPyConnection, types: object, first: int, last: int) -> None:
            raise RuntimeError("derivation failed")

        monkeypatch.setattr(ledger_module, "append_derived", broken)
        with pytest.raises(RuntimeError, match="derivation failed"):
            ledger.append("a", [ev.RunFinished(run_id="r", value=1.0, duration_s=1.0)], 1)
        monkeypatch.undo()
        assert ledger.version("a") == 1
        assert ledger.append("a", [ev.RunFinished(run_id="r", value=2.0, duration_s=1.0)], 1)[0].seq == 2
    with read_only_connection(ledger_path) as con:
        assert mismatches(con) == (2, 0, 0)
        assert con.execute("SELECT status, value FROM runs").fetchall() == [("finished", 2.0)]


# A writer that appends run events in small batches until killed.
WRITER = textwrap.dedent("""
    import sys
    from ledgerlab.storage import events as ev
    from ledgerlab.storage.ledger import DuckDBLedger
    ledger = DuckDBLedger(sys.argv[1])
    version = ledger.version("a")
    n = version
    print("writing", flush=True)
    while True:
        batch = [ev.RunStarted(run_id=f"r{n}", candidate_id="c", seed=n),
                 ev.RunFinished(run_id=f"r{n}", value=1.0, duration_s=1.0), ev.CampaignPaused(reason="x"),
                 ev.PatchRejected(hypothesis_id=f"h{n}", reason="no")]
        version = ledger.append("a", batch[n % 4: 1 + n % 5], version)[-1].version
        n += 1
""")


def test_kill_9_leaves_events_and_run_events_in_step(ledger_path: Path) -> None:
    for wait_s in (0.3, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ledger_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        time.sleep(wait_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        con = duckdb.connect(str(ledger_path), read_only=True)  # replays the WAL; no writer's backfill
        (runs, *run_gaps), (links, *link_gaps) = (mismatches(con, derived) for derived in DERIVED)
        con.close()
        assert runs > 0 and links > 0 and run_gaps == link_gaps == [0, 0]


def test_verify_rebuilds_the_derived_tables(tmp_path: Path) -> None:
    path, old = tmp_path / "new" / "ledger.duckdb", tmp_path / "old" / "ledger.duckdb"
    with DuckDBLedger(path) as ledger:
        append_stream(ledger, fixture_stream())
    report = verify_report(path)
    assert report.ok and [(d.table, d.ok, d.rows) for d in report.derived] == [
        ("run_events", True, 22), ("hypothesis_events", True, 16)]
    assert any(text.startswith("derived: run_events (22 rows) as rebuilt") for _, text in report.lines())
    con = duckdb.connect(str(path))  # an edit the chain cannot see, but the views would show
    con.execute("UPDATE run_events SET value = 0.1 WHERE run_id = 'r-1b' AND type = 'RunFinished'")
    con.execute("DELETE FROM hypothesis_events WHERE type = 'PatchRejected'")
    con.close()
    report = verify_report(path)
    assert report.chain.ok and not report.ok
    assert [(d.missing, d.extra) for d in report.derived] == [(1, 1), (1, 0)]
    assert (False, "derived: run_events differs from its rebuild from the events: 1 row(s) missing, 1 from no "
                   "event (edited out of band; the views read it); hypothesis_events differs from its rebuild "
                   "from the events: 1 row(s) missing, 0 from no event (edited out of band; the views read it)"
            ) in report.lines()
    old_ledger(old, fixture_stream())  # read-only, before any writer made the tables
    assert verify_report(old).ok and all(d.rows is None for d in verify_report(old).derived)
