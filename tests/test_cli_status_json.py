"""`ledgerlab status --format json` holds the numbers the text shows, and the `incumbents` view the same effects.

Three campaigns: marketing through `ledgerlab run` (concurrent, factorial windows), the toy domain
(independent design: confirmed effects paired on fresh seeds), and the in-test window domain (concurrent,
two accepted changes, so the improvement is the sum of their confirmed effects).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.project import Project
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner(env={"COLUMNS": "500"})  # wide enough that rich wraps no line of the table


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _report(folder: Path) -> dict[str, Any]:
    return json.loads(_cli("status", "--format", "json", "--dir", str(folder)))


def _flat(text: str) -> str:
    return " ".join(text.split())


def assert_text_matches(report: dict[str, Any], text: str) -> None:
    """Every number of the report appears in the text status as the text renders it."""
    from ledgerlab.cli.campaign import fmt, interval  # after cli.main (the commands register on its app)

    out = _flat(text)
    inc, base, gain = report["incumbent"], report["baseline"], report["improvement"]
    assert report["campaign_id"] in out and f"{report['domain']}: {report['metric']['name']}" in out
    assert _flat(f"{inc['candidate_id'][:12]}") in out and f"{report['metric']['name']} {fmt(inc['value'])}" in out
    assert f"{fmt(base['value'])} (mean of {base['runs']} runs)" in out
    if inc["basis"] == "after_selection":
        assert f"(mean of {inc['runs']} runs after selection)" in out
    if gain["status"] == "measured":
        level = ", 95%" if gain["ci_level"] else ", too few runs for an interval"
        assert _flat(f"{fmt(gain['effect'])} {interval(gain['ci_low'], gain['ci_high'])} "
                     f"(> 0 is better; {gain['method']}{level})") in out
    for h in report["accepted"]:
        sel, check = h["selected"], h["confirmed"]
        assert f"#{h['number']} " in out and _flat(f"selected at {fmt(sel['effect'])} "
                                                   f"{interval(sel['ci_low'], sel['ci_high'])}") in out
        if check:
            assert _flat(f"confirmed {fmt(check['effect'])} {interval(check['ci_low'], check['ci_high'])} "
                         f"({check['method']})") in out
    hyp, runs = report["hypotheses"], report["runs"]
    assert f"{hyp['tried']} tried: {hyp['accepted']} accepted, {hyp['rejected']} rejected" in out
    assert f"{hyp['patch_rejected']} patch-rejected, {hyp['open']} open" in out
    assert f"{runs['finished']} finished, {runs['failed']} failed" in out and f"{runs['unfinished']} unfinished" in out
    assert f"{report['budgets_used']['hypotheses']} hypotheses, {report['budgets_used']['runs']} runs" in out


def assert_view_matches(folder: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The `incumbents` view's confirmed effects, improvement and methods are the report's."""
    rows = json.loads(_cli("sql", f"select * from incumbents where campaign_id = '{report['campaign_id']}'",
                           "--dir", str(folder), "--format", "json"))
    by_hypothesis = {r["hypothesis_id"]: r for r in rows}
    assert len(rows) == len(report["accepted"]) + 1
    for h in report["accepted"]:
        row, check = by_hypothesis[h["hypothesis_id"]], h["confirmed"]
        if check is None:
            assert row["confirmed_effect"] is None and row["confirmed_method"] is None
            continue
        assert row["confirmed_method"] == check["method"]
        assert row["confirmed_effect"] == pytest.approx(check["effect"], rel=1e-9, abs=1e-12)
        _close_interval((row["confirmed_ci_low"], row["confirmed_ci_high"]), (check["ci_low"], check["ci_high"]))
    current = next(r for r in rows if r["is_current"])
    gain = report["improvement"]
    assert current["candidate_id"] == report["incumbent"]["candidate_id"]
    assert current["improvement_method"] == gain["method"]
    if gain["effect"] is None:
        assert current["improvement"] is None
        return rows
    assert current["improvement"] == pytest.approx(gain["effect"], rel=1e-9, abs=1e-12)
    if gain.get("relative") is not None:  # the holdback's relative lift, delta method in both
        assert current["improvement_rel"] == pytest.approx(gain["relative"], rel=1e-9, abs=1e-12)
        _close_interval((current["improvement_rel_ci_low"], current["improvement_rel_ci_high"]),
                        (gain["relative_ci_low"], gain["relative_ci_high"]))
    _close_interval((current["improvement_ci_low"], current["improvement_ci_high"]), (gain["ci_low"], gain["ci_high"]))
    return rows


def _close_interval(got: Sequence[float | None], expected: Sequence[float | None]) -> None:
    """The view's t quantiles are within 0.1% of scipy's, and for proportions it has the Wald interval where
    `status` may have the judge's own (score) interval: at these visitor counts the ends agree to 1% of the width."""
    if expected[0] is None:
        assert list(got) == [None, None]
        return
    width = expected[1] - expected[0]  # type: ignore[operator]
    assert got[0] == pytest.approx(expected[0], abs=1e-2 * width + 1e-12)
    assert got[1] == pytest.approx(expected[1], abs=1e-2 * width + 1e-12)


# ------------------------------------------------------------------------------------------ campaigns


def _run_campaign(folder: Path, domain: Any, steps: list[dict[str, Any]], **judge: Any) -> None:
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.executors.local import LocalExecutor
    from ledgerlab.testing import ScriptedProposer

    agents = [Agent("a", ScriptedProposer(steps))]
    with DuckDBLedger(Project.at(folder).ledger_path) as store:
        state = Campaign(store, domain, CampaignConfig(domain=domain.name, judge=judge), agents=agents,
                         executor=LocalExecutor(domain), runs_dir=folder / "runs").run()
    assert state.status == "finished"


def test_marketing_status_json_matches_the_text_and_the_view(tmp_path: Path) -> None:
    _cli("run", "marketing", "--dir", str(tmp_path), "--max-hypotheses", "12", "--seed", "2", "-q")
    report = _report(tmp_path)
    assert report["domain"] == "marketing" and report["status"] == "finished" and report["seed"] == 2
    assert report["first_seed"] == 2_000_000 and report["metric"]["kind"] == "proportion"
    assert report["hypotheses"]["tried"] == 12 and report["budgets_used"]["units"] > 0
    assert report["running_now"] == {"interrupted": True, "runs": []}
    assert report["improvement"]["status"] in ("baseline_is_incumbent", "measured", "not_measured")
    assert_text_matches(report, _cli("status", "--dir", str(tmp_path)))
    assert_view_matches(tmp_path, report)
    for h in report["accepted"]:  # factorial selection, then A/B against the page it replaced on fresh runs
        assert h["confirmed"] is None or "fresh same-window A/B runs" in h["confirmed"]["method"]


def test_independent_design_status_json_matches_the_text_and_the_view(tmp_path: Path) -> None:
    from ledgerlab.testing import ToyDomain

    _run_campaign(tmp_path, ToyDomain(), [{"X": 5.0}, {"MODE": "broken"}, {"MODE": "fancy"}, {"Y": 5}])
    report = _report(tmp_path)
    accepted = report["accepted"]
    assert accepted and all(h["confirmed"]["method"] == "paired t on 2 fresh seeds" for h in accepted)
    assert all(h["confirmed"]["ci_low"] < h["confirmed"]["effect"] < h["confirmed"]["ci_high"] for h in accepted)
    gain = report["improvement"]
    assert gain["status"] == "measured" and gain["ci_level"] == 0.95 and gain["effect"] > 0
    # The holdback pairs (fresh seeds no judge read), not the incumbent's runs later changes were judged on.
    assert gain["method"].startswith("holdback: incumbent vs baseline on ")
    assert gain["relative_ci_low"] < gain["relative"] < gain["relative_ci_high"]
    assert report["runs"]["failed_by_status"] == {"crashed": 1}  # MODE = "broken"
    assert_text_matches(report, _cli("status", "--dir", str(tmp_path)))
    rows = assert_view_matches(tmp_path, report)
    assert all(r["confirmed_n"] == 2 for r in rows if r["hypothesis_id"])  # the two fresh seeds


def test_concurrent_improvement_adds_up_the_confirmed_changes(tmp_path: Path) -> None:
    from tests.window_domain import WindowDomain

    # X 2 → 4 → 6 raises the rate by 0.004 twice; one candidate per run keeps the windows simple. Without
    # the holdback the improvement is the confirmed effects added up.
    _run_campaign(tmp_path, WindowDomain(visitors=50_000, candidates_per_run=1), [{"X": 4.0}, {"X": 6.0}],
                  holdback_max_runs=0)
    report = _report(tmp_path)
    assert [h["confirmed"]["method"] for h in report["accepted"]] == \
        ["two-proportion z on 2 fresh same-window A/B runs, pooled"] * 2
    gain = report["improvement"]
    assert gain["method"] == ("sum of the 2 accepted changes' effects, each confirmed on its own fresh "
                              "same-window A/B runs")
    assert gain["effect"] == pytest.approx(sum(h["confirmed"]["effect"] for h in report["accepted"]))
    assert_text_matches(report, _cli("status", "--dir", str(tmp_path)))
    rows = assert_view_matches(tmp_path, report)
    current = next(r for r in rows if r["is_current"])
    assert current["improvement"] == pytest.approx(current["same_window_improvement"])


def test_concurrent_improvement_is_the_holdback_by_default(tmp_path: Path) -> None:
    from tests.window_domain import WindowDomain

    _run_campaign(tmp_path, WindowDomain(visitors=50_000, candidates_per_run=1), [{"X": 4.0}, {"X": 6.0}])
    report = _report(tmp_path)
    gain = report["improvement"]
    assert gain["method"].startswith("holdback: incumbent vs baseline in ") and gain["status"] == "measured"
    assert gain["relative_ci_low"] < gain["relative"] < gain["relative_ci_high"]
    assert_text_matches(report, _cli("status", "--dir", str(tmp_path)))
    current = next(r for r in assert_view_matches(tmp_path, report) if r["is_current"])
    assert current["improvement_rel"] == pytest.approx(gain["relative"])
