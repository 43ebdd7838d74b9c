"""ledgerlab.open: the typed API's row classes against the views, its reads, and its read-only path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fixtures_events import append_stream, fixture_stream

import ledgerlab
from ledgerlab.api import ROW_CLASSES, Hypothesis, JSONValue, Ledger, Run, python_type
from ledgerlab.core.project import Project
from ledgerlab.errors import CampaignError, LedgerError, QueryError, ReadOnlyQueryError
from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
from ledgerlab.storage.server import serve_readers
from ledgerlab.storage.views import VIEW_DOCS, VIEWS

# The DuckDB column types a view may have, and the Python type its row field must then have.
DUCKDB_TYPES = {"VARCHAR": str, "BIGINT": int, "INTEGER": int, "HUGEINT": int, "DOUBLE": float,
                "BOOLEAN": bool, "TIMESTAMP": dt.datetime, "JSON": dict}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api")
    with DuckDBLedger(Project.at(folder).ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    return folder


def test_every_view_has_a_row_class() -> None:
    assert set(ROW_CLASSES) == set(VIEWS) == set(VIEW_DOCS)


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_row_class_matches_the_view(project: Path, view: str) -> None:
    """Names in the view's order, types from DuckDB's, descriptions from `ledgerlab schema`."""
    with read_only_connection(Project.at(project).ledger_path) as con:
        described = con.execute(f"DESCRIBE {view}").fetchall()
    cls = ROW_CLASSES[view]
    fields = cls.model_fields
    assert list(fields) == [name for name, *_ in described]
    for name, duck_type, *_ in described:
        assert python_type(fields[name].annotation) is DUCKDB_TYPES[duck_type], (view, name, duck_type)
        assert (fields[name].annotation is JSONValue) == (name in cls.JSON_COLUMNS), (view, name)
        assert fields[name].description == VIEW_DOCS[view][1][name], (view, name)


def test_views_as_rows_frames_and_arrow(project: Path) -> None:
    lab = ledgerlab.open(project)
    assert isinstance(lab, Ledger) and "ledgerlab.open(" in repr(lab)
    campaigns = lab.campaigns()
    assert [c.campaign_id for c in campaigns] and all(c.status for c in campaigns)
    hyps = lab.hypotheses("camp-min")
    assert hyps and all(isinstance(h, Hypothesis) and h.campaign_id == "camp-min" for h in hyps)
    assert all(isinstance(h.changes, dict | None) for h in hyps)  # JSON parsed
    accepted = lab.hypotheses("camp-min", status="accepted")
    assert {h.hypothesis_id for h in accepted} < {h.hypothesis_id for h in hyps}
    runs = lab.runs(status="finished")
    assert runs and all(isinstance(r, Run) and isinstance(r.value, float) for r in runs)
    frame = runs.to_pandas()
    assert list(frame.columns) == list(Run.model_fields) and len(frame) == len(runs)
    table = lab.verdicts().to_arrow()
    assert table.column_names == list(ROW_CLASSES["verdicts"].model_fields)
    assert str(table.schema.field("details").type) == "string"  # JSON columns travel as their text
    for name in ("incumbents", "llm_calls", "leaderboard"):
        assert isinstance(getattr(lab, name)(), list)
    with pytest.raises(QueryError, match="no column nope"):
        lab.runs(nope=1)


def test_sql_and_snapshot(project: Path) -> None:
    lab = ledgerlab.open(project)
    got = lab.sql("SELECT campaign_id, hypotheses FROM campaigns ORDER BY campaign_id")
    assert got.columns == ["campaign_id", "hypotheses"] and got.records()[1]["campaign_id"] == "camp-min"
    assert list(got.to_pandas()["hypotheses"]) == [r[1] for r in got.rows]
    assert got.to_arrow().num_rows == len(got)
    assert lab.head() > 0
    snap = lab.snapshot("camp-min")
    assert snap.state.campaign_id == "camp-min" and snap.report["campaign_id"] == "camp-min"
    assert snap.head_seq == lab.head() and snap.report["hypotheses"]["tried"] == len(lab.hypotheses("camp-min"))
    with pytest.raises(CampaignError, match="no campaign \"x'y\""):
        lab.snapshot("x'y")  # quoted, never spliced into the SQL
    assert lab.hypotheses(campaign="x' OR '1'='1") == []


def test_read_only_and_missing(project: Path, tmp_path: Path) -> None:
    lab = ledgerlab.open(project)
    with pytest.raises(ReadOnlyQueryError):
        lab.sql("DELETE FROM events")
    with pytest.raises(LedgerError, match="no ledger"):
        ledgerlab.open(tmp_path / "nothing")


def test_reads_through_a_running_campaign(tmp_path: Path) -> None:
    """While a campaign holds the ledger, the handle asks its socket (the file itself is locked)."""
    path = Project.at(tmp_path).ledger_path
    with DuckDBLedger(path) as ledger:
        append_stream(ledger, fixture_stream())
        with serve_readers(ledger):
            lab = ledgerlab.open(tmp_path)
            assert {c.campaign_id for c in lab.campaigns()} == {"camp-min", "camp-max"}
            assert lab.snapshot("camp-min").report["campaign_id"] == "camp-min"
            with pytest.raises(ReadOnlyQueryError):
                lab.sql("DROP VIEW runs")
