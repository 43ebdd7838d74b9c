"""The SQL views over the hand-checked fixture stream (see tests/fixtures_events.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from fixtures_events import MAX, MIN, append_stream, fixture_stream

from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
from ledgerlab.storage.views import _T_KNOTS, _T_VALUES, _Z975, VIEW_DOCS, VIEWS, _t975


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    path = tmp_path_factory.mktemp("views") / "ledger.duckdb"
    with DuckDBLedger(path) as ledger:
        append_stream(ledger, fixture_stream())
    with read_only_connection(path) as connection:
        yield connection


def one(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    cursor = con.execute(sql)
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip([d[0] for d in cursor.description], rows[0]))


def test_documented_columns_match_views(con: duckdb.DuckDBPyConnection) -> None:
    assert set(VIEW_DOCS) == set(VIEWS)
    for name, (_, columns) in VIEW_DOCS.items():
        actual = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
        assert actual == list(columns), name


def test_runs_use_latest_attempt(con: duckdb.DuckDBPyConnection) -> None:
    rerun = one(con, "SELECT * FROM runs WHERE run_id = 'r-1a'")
    assert rerun["attempt"] == 2 and rerun["status"] == "finished" and rerun["value"] == 0.95
    assert rerun["finished_at"] > rerun["started_at"] and rerun["worker"] == "w1" and rerun["duration_s"] == 1.5
    crashed = one(con, "SELECT * FROM runs WHERE run_id = 'r-3a'")
    assert crashed["status"] == "crashed" and crashed["error"] == "CUDA out of memory" and crashed["value"] is None
    assert one(con, "SELECT status FROM runs WHERE run_id = 'r-4a'")["status"] == "running"
    assert one(con, "SELECT count(*) AS n FROM runs")["n"] == 11


def test_hypotheses_status_and_lineage(con: duckdb.DuckDBPyConnection) -> None:
    rows = dict(con.execute("SELECT hypothesis_id, status FROM hypotheses WHERE campaign_id = ?", [MIN]).fetchall())
    assert rows == {"h1": "accepted", "h2": "patch_rejected", "h3": "rejected", "h4": "testing", "h5": "proposed"}
    h2 = one(con, "SELECT * FROM hypotheses WHERE hypothesis_id = 'h2'")
    assert h2["reject_reason"] == "patch does not apply" and h2["candidate_id"] is None and h2["decided_at"]
    h3 = one(con, "SELECT * FROM hypotheses WHERE hypothesis_id = 'h3'")
    assert h3["reject_reason"] == "futility" and h3["candidate_id"] == "cand-3" and h3["built_on_hypothesis_id"] == "h1"
    assert one(con, "SELECT built_on_hypothesis_id AS b FROM hypotheses WHERE hypothesis_id = 'h1'")["b"] is None


def test_incumbents_value_and_sign(con: duckdb.DuckDBPyConnection) -> None:
    current_min = one(con, f"SELECT * FROM incumbents WHERE campaign_id = '{MIN}' AND is_current")
    assert current_min["candidate_id"] == "cand-1" and current_min["n"] == 2  # only the runs after selection
    assert current_min["value"] == pytest.approx(0.91)
    assert current_min["improvement_over_baseline"] == pytest.approx(0.10)  # minimize: lower is better, > 0
    current_max = one(con, f"SELECT * FROM incumbents WHERE campaign_id = '{MAX}' AND is_current")
    assert current_max["improvement_over_baseline"] == pytest.approx(0.03)  # maximize: higher is better, > 0
    base = one(con, f"SELECT * FROM incumbents WHERE campaign_id = '{MIN}' AND hypothesis_id IS NULL")
    assert base["candidate_id"] == "cand-base" and base["value"] == pytest.approx(1.01) and not base["is_current"]


def test_campaigns(con: duckdb.DuckDBPyConnection) -> None:
    mins = one(con, f"SELECT * FROM campaigns WHERE campaign_id = '{MIN}'")
    assert (mins["status"], mins["direction"], mins["hypotheses"], mins["accepted"]) == ("running", "minimize", 5, 1)
    assert mins["baseline_value"] == pytest.approx(1.01) and mins["best_value"] == pytest.approx(0.91)
    assert mins["finished_at"] is None
    maxs = one(con, f"SELECT * FROM campaigns WHERE campaign_id = '{MAX}'")
    assert maxs["status"] == "finished" and maxs["finish_reason"] == "max_hypotheses" and maxs["finished_at"]


def test_verdicts_and_llm_calls(con: duckdb.DuckDBPyConnection) -> None:
    h3 = one(con, "SELECT * FROM verdicts WHERE hypothesis_id = 'h3'")
    assert h3["decision"] == "reject" and h3["p_value"] == 0.01 and h3["n_candidate"] == 2 and h3["test"] == "welch"
    call = one(con, "SELECT * FROM llm_calls")
    assert call["ok"] is True and call["prompt_tokens"] == 100 and call["cost_usd"] == 0.01


def test_leaderboard(con: duckdb.DuckDBPyConnection) -> None:
    cand1 = one(con, "SELECT * FROM leaderboard WHERE candidate_id = 'cand-1'")
    assert cand1["runs"] == 4 and cand1["mean"] == pytest.approx(0.935) and cand1["is_incumbent"]
    assert cand1["hypothesis_id"] == "h1"
    half = 3.182 * cand1["std"] / 2  # t(0.975, df=3) * s / sqrt(4)
    assert cand1["ci_low"] == pytest.approx(0.935 - half) and cand1["ci_high"] == pytest.approx(0.935 + half)
    single = one(con, "SELECT * FROM leaderboard WHERE candidate_id = 'cand-A'")
    assert single["runs"] == 1 and single["ci_low"] is None and not single["is_incumbent"]


def test_t_quantile_is_the_knot_interpolation_to_the_bit() -> None:
    """`_t975` binds its inputs with lambdas; its values are those of the plain list lookup it replaced."""
    knots = [float(k) for k in _T_KNOTS.strip("[]").split(",")]
    plain_j = f"least(len(list_filter({_T_KNOTS}::DOUBLE[], lambda k: k <= df)), 44)"
    k, v = f"({_T_KNOTS}::DOUBLE[])", f"({_T_VALUES}::DOUBLE[])"
    plain = (f"(CASE WHEN NOT df >= 1 OR isnan(df) THEN NULL WHEN df > 30 THEN {_Z975} + 2.372271230298564 / df "
             f"+ 2.8224986157396135 / df ^ 2 + 2.5558496795077255 / df ^ 3 + 1.589534053393825 / df ^ 4 "
             f"ELSE exp(ln({v}[{plain_j}]) + (1 / df - 1 / {k}[{plain_j}]) / (1 / {k}[{plain_j} + 1] "
             f"- 1 / {k}[{plain_j}]) * (ln({v}[{plain_j} + 1]) - ln({v}[{plain_j}]))) END)")
    near = [x for knot in knots for x in (knot, math.nextafter(knot, 0), math.nextafter(knot, 99), knot + 0.01)]
    values = near + [0.5 + i * 0.0123 for i in range(3300)] + [0.0, -1.0, math.inf, math.nan, 1e300]
    con = duckdb.connect()
    con.execute("CREATE TABLE d (df DOUBLE)")
    con.executemany("INSERT INTO d VALUES (?)", [[x] for x in values] + [[None]])
    differ = con.execute(f"SELECT df FROM d WHERE ({plain}) IS DISTINCT FROM ({_t975('df')})").fetchall()
    assert differ == []
    assert con.execute(f"SELECT round({_t975('3.0')}, 3), {_t975('0.5')}").fetchall() == [(3.182, None)]
