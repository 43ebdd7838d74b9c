"""DuckDB ledger specifics: tamper detection, the lease, view upgrades, upcasting on read."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest
from fixtures_events import append_stream, fixture_stream

from ledgerlab.errors import LedgerError, LedgerLockedError, ReadOnlyQueryError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
from ledgerlab.storage.query import live_read
from ledgerlab.storage.verify import verify_ledger
from ledgerlab.storage.views import VIEWS_VERSION, views_version


@pytest.fixture
def filled(ledger_path: Path) -> Path:
    with DuckDBLedger(ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    return ledger_path


def tamper(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


def test_creates_missing_folder_and_intact_chain(filled: Path) -> None:
    result = verify_ledger(filled)
    assert result.ok and result.count == len(fixture_stream()) and "chain intact" in result.summary()


def test_detects_update(filled: Path) -> None:
    tamper(filled, "UPDATE events SET payload = '{\"reason\":\"forged\",\"type\":\"CampaignPaused\"}' WHERE seq = 20")
    result = verify_ledger(filled)
    assert not result.ok and result.first_bad_seq == 20 and "hash" in result.reason


def test_detects_delete(filled: Path) -> None:
    tamper(filled, "DELETE FROM events WHERE seq = 7")
    result = verify_ledger(filled)
    assert not result.ok and result.first_bad_seq == 8 and "missing" in result.reason


def test_detects_insert(filled: Path) -> None:
    tamper(filled, "INSERT INTO events SELECT seq + 1000, event_id, campaign_id, version + 1000, type, schema_version, "
                   "payload, recorded_at, hash, hash FROM events WHERE seq = 3")
    result = verify_ledger(filled)
    assert not result.ok and result.first_bad_seq == 1003


def test_detects_appended_row_with_bad_hash(filled: Path) -> None:
    with DuckDBLedger(filled) as ledger:
        n = len(ledger.read())
    tamper(filled, f"INSERT INTO events SELECT {n + 1}, event_id, campaign_id, version + 1000, type, schema_version, "
                   f"payload, recorded_at, (SELECT hash FROM events WHERE seq = {n}), repeat('a', 64) FROM events WHERE seq = 3")
    result = verify_ledger(filled)
    assert not result.ok and result.first_bad_seq == n + 1 and result.raise_if_broken is not None


def test_batches_append_after_reopening(ledger_path: Path) -> None:
    # A fresh lease reads the chain head and the stream version first; a batch then goes in by another path.
    with DuckDBLedger(ledger_path) as ledger:
        ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=0)
    for _attempt in range(2):
        with DuckDBLedger(ledger_path) as ledger:
            version = ledger.version("a")
            rows = ledger.append("a", [ev.CampaignPaused(reason=str(i)) for i in range(3)], expected_version=version)
            assert [r.version for r in rows] == [version + 1, version + 2, version + 3]
            assert ledger.read()[-3:] == rows
    assert verify_ledger(ledger_path).ok and verify_ledger(ledger_path).count == 7


def test_lease_is_released_when_idle(ledger_path: Path) -> None:
    ledger = DuckDBLedger(ledger_path, idle_s=0.05)
    ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=0)
    # Once the idle thread has closed the file, a read-only open from "another process" works.
    deadline = time.monotonic() + 60
    while True:
        try:
            with read_only_connection(ledger_path, wait_s=0) as con:
                assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
            break
        except LedgerLockedError:
            assert time.monotonic() < deadline, "the idle lease was never released"
            time.sleep(0.02)
    assert ledger.append("a", [ev.CampaignPaused(reason="y")], expected_version=1)[0].seq == 2
    ledger.close()


def test_reader_gives_up_with_actionable_error(ledger_path: Path) -> None:
    ledger = DuckDBLedger(ledger_path, idle_s=10, yield_s=0.0)
    ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=0)
    # A writer that never yields (the flag check is bypassed) keeps the reader out.
    ledger._reader_waiting = lambda: False  # type: ignore[method-assign]
    with pytest.raises(LedgerLockedError, match="LEDGERLAB_LOCK_WAIT"):
        with read_only_connection(ledger_path, wait_s=0.2):
            pass
    ledger.close()


def test_reader_gets_in_while_writer_holds_lease(ledger_path: Path) -> None:
    ledger = DuckDBLedger(ledger_path, idle_s=10)
    ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=0)
    # The lease yields to the waiting reader (the wait is generous for a loaded machine: a reader gets in at once).
    with read_only_connection(ledger_path, wait_s=60) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
    assert ledger.append("a", [ev.CampaignPaused(reason="y")], expected_version=1)[0].version == 2
    ledger.close()


def test_missing_ledger_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="ledgerlab init"):
        verify_ledger(tmp_path / "none.duckdb")


def test_old_views_are_upgraded(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    from ledgerlab.storage.schema import EVENTS_DDL, META_DDL

    con = duckdb.connect(str(ledger_path))  # a ledger written by an older ledgerlab
    con.execute(EVENTS_DDL)
    con.execute(META_DDL)
    con.execute("INSERT INTO ledger_meta (key, value) VALUES ('views_version', '0')")
    con.execute("CREATE VIEW runs AS SELECT seq AS run_id FROM events")
    con.close()
    with DuckDBLedger(ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    with read_only_connection(ledger_path) as con:
        assert views_version(con) == VIEWS_VERSION
        assert con.execute("SELECT count(*) FROM runs WHERE attempt = 2").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM campaigns").fetchone() == (2,)


def test_upcaster_applies_on_read(ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev.CampaignPaused, "SCHEMA_VERSION", 2)

    def rename(data: dict) -> dict:
        return {"type": data["type"], "reason": data.pop("why")}

    monkeypatch.setitem(ev._UPCASTERS, ("CampaignPaused", 1), rename)
    with DuckDBLedger(ledger_path) as ledger:
        ledger.append("a", [ev.CampaignPaused(reason="new")], expected_version=0)
        head = ledger.read()[-1]
    stamp = ev.utc_now()  # a row written by an older ledgerlab, schema version 1, chained correctly
    payload = '{"type":"CampaignPaused","why":"old"}'
    digest = ev.row_hash(head.hash, 2, "e-old", "a", 2, "CampaignPaused", 1, payload, stamp)
    con = duckdb.connect(str(ledger_path))
    con.execute("INSERT INTO events VALUES (2, 'e-old', 'a', 2, 'CampaignPaused', 1, ?, ?, ?, ?)",
                [payload, stamp.replace(tzinfo=None), head.hash, digest])
    con.close()
    with DuckDBLedger(ledger_path) as ledger:
        events = [row.event() for row in ledger.read()]
    assert events == [ev.CampaignPaused(reason="new"), ev.CampaignPaused(reason="old")]
    assert verify_ledger(ledger_path).ok


def _lease_threads(ledger: DuckDBLedger) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ledger-lease" and t.is_alive() and t is ledger._reaper]


def test_close_leaves_no_thread_behind(ledger_path: Path) -> None:
    # The lease's thread ends before close() returns, after a plain lease and after a campaign's keep_open: a
    # daemon thread still in DuckDB as the interpreter exits aborts the process (SIGABRT after the work is done).
    for hold in (False, True):
        ledger = DuckDBLedger(ledger_path, idle_s=30)
        reaper = ledger._reaper
        assert reaper is not None and reaper.is_alive()
        if hold:
            ledger.keep_open(True)
            ledger.keep_open(False)  # starts a new lease thread, as the query server does when it closes
            reaper = ledger._reaper
        ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=ledger.version("a"))
        ledger.close()
        assert reaper is not None and not reaper.is_alive()
        assert not _lease_threads(ledger)


def test_a_program_that_never_closes_its_ledger_has_it_closed_before_exit(ledger_path: Path) -> None:
    # The check is registered before ledgerlab is imported, so it runs after ledgerlab's own exit hook (atexit
    # runs last-in first-out) and while threads still run normally: by then the file must be closed.
    script = textwrap.dedent(f"""
        import atexit, sys, threading

        def check():
            alive = [t.name for t in threading.enumerate() if t.name == "ledger-lease"]
            print("open" if ledger._con is not None else "closed", alive, flush=True)
        atexit.register(check)

        from ledgerlab.storage import events as ev
        from ledgerlab.storage.ledger import DuckDBLedger
        ledger = DuckDBLedger({str(ledger_path)!r}, idle_s=30)
        ledger.append("a", [ev.CampaignPaused(reason="x")], expected_version=0)
        sys.exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "closed []", done.stdout + done.stderr
    with read_only_connection(ledger_path, wait_s=0) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_live_reads_are_checked_the_same_from_many_threads() -> None:
    # The query server's handler threads share one parsing connection under a lock (none is a thread's own).
    sql = "SELECT count(*) FROM runs WHERE status = 'ok'"
    expected = live_read(sql)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: live_read(sql), range(200))) == {expected}
        refused = list(pool.map(lambda _: _refusal("SELECT * FROM read_csv('x.csv')"), range(50)))
    assert all("read_csv() is not answered" in r for r in refused)


def _refusal(sql: str) -> str:
    try:
        live_read(sql)
    except ReadOnlyQueryError as exc:
        return str(exc)
    return ""


def test_threads_of_one_process_read_the_same_file_at_once(filled: Path) -> None:
    # DuckDB gives them one shared database instance; the second finds it locked down by the first.
    barrier = threading.Barrier(4)

    def count(_: int) -> int:
        with read_only_connection(filled, wait_s=60) as con:
            barrier.wait(timeout=60)  # all four connections open together
            return int(con.execute("SELECT count(*) FROM events").fetchone()[0])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(count, range(4)))
    assert len(set(counts)) == 1 and counts[0] > 0
    with read_only_connection(filled, wait_s=0) as con, pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")  # still locked down
