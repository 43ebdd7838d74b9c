"""Two processes: a writer killed mid-append loses nothing it committed; readers work while a writer writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.storage.events import CampaignPaused
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.storage.verify import verify_ledger

# Appends batches of 1-3 events forever, printing each committed version after append returns.
WRITER = """
import sys, time
from ledgerlab.storage.events import CampaignPaused
from ledgerlab.storage.ledger import DuckDBLedger
ledger = DuckDBLedger(sys.argv[1], idle_s=0.2)
version, pause = 0, float(sys.argv[2])
while True:
    rows = ledger.append("w", [CampaignPaused(reason=str(version + i)) for i in range(1 + version % 3)], version)
    version = rows[-1].version
    print(version, flush=True)
    if pause:
        time.sleep(pause)
"""


def start_writer(path: Path, pause: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(pause)], stdout=subprocess.PIPE, text=True)


def test_sigkill_mid_append_keeps_every_committed_event(ledger_path: Path) -> None:
    writer = start_writer(ledger_path, 0.0)
    committed = 0
    assert writer.stdout is not None
    while committed < 150:
        committed = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with DuckDBLedger(ledger_path) as ledger:
        rows = ledger.read(campaign_id="w")
        assert len(rows) >= committed  # every event it reported, maybe a batch more
        assert [r.version for r in rows] == list(range(1, len(rows) + 1))
        assert [r.event().reason for r in rows] == [str(i) for i in range(len(rows))]  # type: ignore[attr-defined]
        ledger.append("w", [CampaignPaused(reason="after restart")], expected_version=len(rows))
    assert verify_ledger(ledger_path).ok


def test_readers_never_fail_while_a_writer_appends(tmp_path: Path, ledger_path: Path) -> None:
    DuckDBLedger(ledger_path).close()
    writer = start_writer(ledger_path, 0.002)  # continuous appends: the lease never goes idle by itself
    runner = CliRunner()
    try:
        assert writer.stdout is not None
        writer.stdout.readline()
        seen: list[int] = []
        # Read until the reads have seen the writer progress: a count reached, not a rate (a loaded machine
        # only makes it take longer; the deadline is for a writer that never lets a reader in).
        deadline = time.monotonic() + 120
        while len(seen) < 5 or seen[-1] == seen[0]:
            assert time.monotonic() < deadline, f"reads saw no progress: {seen}"
            result = runner.invoke(app, ["sql", "SELECT max(version) FROM events", "--format", "csv", "--dir", str(tmp_path)])
            assert result.exit_code == 0, result.output
            seen.append(int(result.output.splitlines()[1]))
            result = runner.invoke(app, ["log", "--limit", "3", "--dir", str(tmp_path)])
            assert result.exit_code == 0 and "CampaignPaused" in result.output, result.output
        assert seen == sorted(seen)  # never a step back
    finally:
        writer.kill()
        writer.wait()
    assert verify_ledger(ledger_path).ok
