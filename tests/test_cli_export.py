"""`ledgerlab export` and `ledgerlab plot` on the campaign of tests/test_cli_campaign.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest
from test_cli_campaign import CAMPAIGN, H1, H4, IDS, build_project, invoke, one_line_error

from ledgerlab.storage import events as ev

HEADER = ["number", "hypothesis_id", "candidate_id", "metric", "confirmed_metric", "runs", "failed_runs", "decision", "effect",
          "ci_low", "ci_high", "p_value", "test", "alpha_spent", "reason", "agent", "rationale"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return build_project(tmp_path / "proj")


def test_export_tsv_results_table(project: Path) -> None:
    result = invoke("export", "--view", "results", "--dir", str(project))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == HEADER and len(lines) == 6
    rows = [dict(zip(HEADER, line.split("\t"))) for line in lines[1:]]
    assert [r["number"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["decision"] for r in rows] == ["accepted", "patch_rejected", "rejected", "accepted", "testing"]
    first = rows[0]
    assert first["hypothesis_id"] == H1 and first["candidate_id"] == IDS["c1"]
    assert float(first["metric"]) == pytest.approx(0.955) and first["runs"] == "2"
    # its runs after selection: the two confirmation runs and two more as the parent of #4
    assert float(first["confirmed_metric"]) == pytest.approx((0.94 + 0.96 + 0.951 + 0.97) / 4)
    assert float(rows[3]["confirmed_metric"]) == pytest.approx(0.925) and rows[2]["confirmed_metric"] == ""
    assert float(first["effect"]) == pytest.approx(0.055) and float(first["ci_low"]) == pytest.approx(0.035)
    assert float(first["p_value"]) == pytest.approx(0.004) and first["rationale"] == "double the learning rate"
    assert rows[1]["candidate_id"] == "" and rows[1]["reason"] == "patch does not apply"
    assert rows[2]["failed_runs"] == "1" and rows[2]["reason"] == "futility"


def test_export_csv_json_to_file(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    result = invoke("export", "--format", "csv", "--out", str(out), "--dir", str(project))
    assert result.exit_code == 0 and "wrote 5 rows" in result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[3]["hypothesis_id"] == H4 and rows[3]["decision"] == "accepted"
    data = json.loads(invoke("export", "--format", "json", "--dir", str(project)).stdout)
    assert data[3]["metric"] == pytest.approx(0.905) and data[4]["effect"] is None


def test_export_tsv_keeps_one_line_per_row(tmp_path: Path) -> None:
    from test_cli_campaign import campaign_events

    events = [e.model_copy(update={"rationale": "two\tlines\nhere"}) if isinstance(e, ev.HypothesisProposed)
              and e.hypothesis_id == H1 else e for e in campaign_events()]
    build_project(tmp_path, events)
    lines = invoke("export", "--view", "results", "--dir", str(tmp_path)).stdout.splitlines()
    assert len(lines) == 6 and lines[1].endswith("\ttwo lines here")
    lines = invoke("export", "--dir", str(tmp_path)).stdout.splitlines()
    assert len(lines) == 7 and lines[2].endswith("\ttwo lines here")


def test_export_tsv_defaults_to_autoresearch_results_columns(project: Path) -> None:
    lines = invoke("export", "--format", "tsv", "--dir", str(project)).stdout.splitlines()
    header = lines[0].split("\t")
    assert header == ["commit", "val_bpb", "memory_gb", "status", "description"]
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"
    assert [r["status"] for r in rows[1:]] == ["keep", "discard", "crash", "keep", "discard"]
    assert rows[1]["commit"] == IDS["c1"][:7]


def test_kept_rows_carry_the_confirmed_values_status_shows(project: Path) -> None:
    """Not the runs that selected a change (optimistic): its runs after selection, as `status` reports."""
    lines = invoke("export", "--dir", str(project)).stdout.splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    assert float(rows[0][1]) == pytest.approx(1.012)  # the baseline: all its runs, as status says
    assert float(rows[1][1]) == pytest.approx((0.94 + 0.96 + 0.951 + 0.97) / 4)  # not 0.955, its selection
    assert float(rows[4][1]) == pytest.approx(0.925)  # the incumbent: not 0.905
    status = invoke("status", "--dir", str(project)).output
    assert "val_bpb 0.925  (mean of 2 runs after selection)" in status and "1.012  (mean of 5 runs)" in status
    assert float(rows[3][1]) == pytest.approx(0.99)  # a discarded/crashed one: what its own runs measured


def test_export_autoresearch_writes_exactly_its_five_columns(project: Path) -> None:
    result = invoke("export", "--autoresearch", "--dir", str(project))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        f"{IDS['base'][:7]}\t1.012000\t0.0\tkeep\tbaseline",
        f"{IDS['c1'][:7]}\t0.955250\t0.0\tkeep\tdouble the learning rate",
        "-------\t0.000000\t0.0\tdiscard\trewrite the optimizer",
        f"{IDS['c3'][:7]}\t0.000000\t0.0\tcrash\ta deeper model",  # autoresearch writes 0 for crashes
        f"{IDS['c4'][:7]}\t0.925000\t0.0\tkeep\tmore momentum",
    ]  # #5 is still being tested: autoresearch logs an experiment once it is decided


def test_export_autoresearch_refuses_a_metric_that_is_not_val_bpb(tmp_path: Path) -> None:
    from test_cli_campaign import campaign_events

    events = campaign_events()
    events[0] = events[0].model_copy(update={"domain": "marketing", "metric": {
        "name": "conversion_rate", "direction": "maximize", "delta": 0.0, "unit": ""}})
    build_project(tmp_path, events)
    one_line_error(invoke("export", "--autoresearch", "--dir", str(tmp_path)),
                   "--autoresearch writes val_bpb", "conversion_rate (higher is better)", "--format tsv")
    header = invoke("export", "--dir", str(tmp_path)).stdout.splitlines()[0]
    assert header == "commit\tconversion_rate\tmemory_gb\tstatus\tdescription"
    one_line_error(invoke("export", "--autoresearch", "--format", "csv", "--dir", str(tmp_path)), "drop --format")


def test_json_export_rounds_binary_noise(tmp_path: Path) -> None:
    from test_cli_campaign import campaign_events

    noisy = 0.1 + 0.2  # 0.30000000000000004
    events = [e.model_copy(update={"value": noisy}) if isinstance(e, ev.RunFinished) and e.value == 0.95 else e
              for e in campaign_events()]
    build_project(tmp_path, events)
    text = invoke("export", "--view", "runs", "--format", "json", "--dir", str(tmp_path)).stdout
    assert "0.30000000000000004" not in text and [r for r in json.loads(text) if r["value"] == 0.3]


def test_export_parquet_and_views(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    assert invoke("export", "--format", "parquet", "--out", str(out), "--dir", str(project)).exit_code == 0
    con = duckdb.connect()
    rows = con.execute(f"SELECT number, decision, effect FROM '{out}' ORDER BY number").fetchall()
    assert rows[0] == (1, "accepted", pytest.approx(0.055)) and len(rows) == 5
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{out}')").fetchall())
    assert types["effect"] == "DOUBLE" and types["runs"] == "BIGINT"

    runs = tmp_path / "runs.parquet"
    assert invoke("export", "--view", "runs", "--format", "parquet", "--out", str(runs),
                  "--dir", str(project)).exit_code == 0
    assert con.execute(f"SELECT count(*), count(*) FILTER (status = 'running') FROM '{runs}'").fetchone() == (18, 1)
    metrics = con.execute(f"SELECT metrics FROM '{runs}' WHERE value = 0.95").fetchone()[0]
    assert json.loads(metrics) == {"val_bpb": 0.95}
    board = invoke("export", "--view", "leaderboard", "--format", "csv", "--dir", str(project)).stdout
    assert IDS["c4"] in board and "campaign_id" in board.splitlines()[0]


def test_export_bad_input(project: Path, tmp_path: Path) -> None:
    one_line_error(invoke("export", "--view", "events", "--dir", str(project)), "unknown view 'events'")
    one_line_error(invoke("export", "--dir", str(tmp_path / "none")), "no ledger")
    one_line_error(invoke("export", "--campaign", "nope", "--dir", str(project)), "no campaign 'nope'", CAMPAIGN)
    assert invoke("export", "--format", "xml", "--dir", str(project)).exit_code == 2


def test_plot_writes_png(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "charts" / "progress.png"
    result = invoke("plot", "--out", str(out), "--dir", str(project))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_needs_finished_runs(tmp_path: Path) -> None:
    from test_cli_campaign import campaign_events

    build_project(tmp_path, campaign_events()[:1])
    one_line_error(invoke("plot", "--out", str(tmp_path / "p.png"), "--dir", str(tmp_path)), "no finished runs")
    assert not (tmp_path / "p.png").exists()
