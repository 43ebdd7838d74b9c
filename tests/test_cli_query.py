"""`ledgerlab sql`, `log`, `verify`, `schema`, `--version` and `--help` through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest
from fixtures_events import append_stream, fixture_stream
from typer.testing import CliRunner

from ledgerlab import __version__
from ledgerlab.cli.main import app
from ledgerlab.core.project import Project
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    with DuckDBLedger(Project.at(tmp_path).ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    return tmp_path


def invoke(*args: str):  # noqa: ANN201 - typer's Result
    return runner.invoke(app, list(args))


QUERY = "SELECT campaign_id, status, hypotheses FROM campaigns ORDER BY campaign_id"


def test_sql_table(project: Path) -> None:
    result = invoke("sql", QUERY, "--dir", str(project))
    assert result.exit_code == 0 and "camp-min" in result.output and "running" in result.output
    assert "2 rows" in result.output


def test_sql_csv_json_markdown(project: Path) -> None:
    out = invoke("sql", QUERY, "--format", "csv", "--dir", str(project)).output
    assert list(csv.reader(io.StringIO(out))) == [["campaign_id", "status", "hypotheses"],
                                                 ["camp-max", "finished", "1"], ["camp-min", "running", "5"]]
    rows = json.loads(invoke("sql", QUERY, "--format", "json", "--dir", str(project)).output)
    assert rows[1] == {"campaign_id": "camp-min", "status": "running", "hypotheses": 5}
    md = invoke("sql", QUERY, "--format", "markdown", "--dir", str(project)).output.splitlines()
    assert md[0] == "| campaign_id | status | hypotheses |" and md[2] == "| camp-max | finished | 1 |"


@pytest.mark.parametrize("statement", [
    "INSERT INTO events SELECT * FROM events", "UPDATE events SET type = 'x'", "DELETE FROM events",
    "DROP VIEW runs", "CREATE TABLE t (a INT)", "CREATE TEMP TABLE t (a INT)", "ATTACH 'other.duckdb'",
    "COPY events TO 'out.csv'", "INSTALL httpfs", "LOAD httpfs", "SET threads = 1", "PRAGMA threads = 1",
    "SELECT * FROM read_csv('/etc/passwd')", "CHECKPOINT",
])
def test_sql_refuses_writes(project: Path, statement: str) -> None:
    result = invoke("sql", statement, "--dir", str(project))
    assert result.exit_code == 2 and "read-only" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (project / "out.csv").exists()


def test_connection_itself_refuses_writes(project: Path) -> None:
    from ledgerlab.storage.ledger import read_only_connection

    with read_only_connection(Project.at(project).ledger_path) as con:
        for statement in ("DELETE FROM events", "COPY events TO 'x.csv'", "SET enable_external_access = true",
                          "ATTACH 'y.duckdb'", "LOAD httpfs"):
            with pytest.raises(duckdb.Error):
                con.execute(statement)


def test_sql_malformed_and_missing_ledger(project: Path, tmp_path: Path) -> None:
    bad = invoke("sql", "SELEC * FROM runs", "--dir", str(project))
    assert bad.exit_code == 2 and "Parser Error" in bad.output and len(bad.output.strip().splitlines()) == 1
    unknown = invoke("sql", "SELECT nope FROM runs", "--dir", str(project))
    assert unknown.exit_code == 2 and "nope" in unknown.output
    missing = invoke("sql", "SELECT 1", "--dir", str(tmp_path / "empty"))
    assert missing.exit_code == 2 and "ledgerlab init" in missing.output


def test_log(project: Path) -> None:
    result = invoke("log", "--dir", str(project))
    lines = result.output.splitlines()
    assert result.exit_code == 0 and len(lines) == len(fixture_stream())
    assert "r-3a crashed: CUDA out of memory" in result.output and "h3 reject" in result.output
    only = invoke("log", "--type", "RunFinished", "--campaign", "camp-max", "--limit", "1", "--dir", str(project))
    assert len(only.output.splitlines()) == 1 and "r-x2 value 0.13" in only.output


def test_verify_intact_and_tampered(project: Path) -> None:
    ok = invoke("verify", "--dir", str(project))
    assert ok.exit_code == 0 and f"{len(fixture_stream())} events, chain intact" in ok.output
    con = duckdb.connect(str(Project.at(project).ledger_path))
    con.execute("UPDATE events SET type = 'RunFailed' WHERE seq = 12")
    con.close()
    broken = invoke("verify", "--dir", str(project))
    assert broken.exit_code == 1 and "seq 12" in broken.output


def test_schema_lists_views_and_events() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    for word in ("leaderboard:", "improvement_over_baseline", "built_on_hypothesis_id", "RunFinished (v1)", "control_value"):
        assert word in result.output


def test_version_and_help() -> None:
    assert invoke("--version").output.strip() == f"ledgerlab {__version__}"
    helped = invoke("--help")
    assert helped.exit_code == 0 and all(cmd in helped.output for cmd in ("sql", "log", "verify", "schema"))
