"""core/summary.py: one read of a campaign for the CLI and the API, and the progress chart they draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_campaign import CAMPAIGN, IDS, Stream, build_project, campaign_events, invoke

import ledgerlab
from ledgerlab.core.project import Project
from ledgerlab.core.summary import progress, read_campaign, summarize
from ledgerlab.errors import CampaignError
from ledgerlab.storage import events as ev

# Fields of `status`'s report that depend on when it is read.
CLOCK = ("active_seconds", "last_event_seconds_ago", "budgets_used", "running_now")


def with_holdback() -> list[ev.Event]:
    """The realistic campaign plus one finished holdback pair: the incumbent and the baseline on seed 9."""
    s = Stream()
    s.runs = 100  # run ids apart from the campaign's own
    s.run(IDS["c4"], 9, 0.80, role="holdback")
    s.run(IDS["base"], 9, 1.10, role="holdback")
    return campaign_events() + s.events


def test_the_fold_keeps_the_streams_order(tmp_path: Path) -> None:
    build_project(tmp_path, with_holdback())
    state, head = read_campaign(Project.at(tmp_path).ledger_path, None)
    assert head == len(with_holdback()) and state.campaign_id == CAMPAIGN
    assert len(state.finish_order) == 18 and state.finish_order[-1] == "run-102-" + IDS["base"][:6]
    assert [cid for _, cid in state.incumbent_at] == [IDS["base"], IDS["c1"], IDS["c4"]]
    assert [at for at, _ in state.incumbent_at] == [0, 5, 12]  # finished runs when each took over
    assert state.unpriced_calls == 1 and state.llm_calls == 2
    assert {r.duration_s for r in state.runs.values() if r.status == "finished"} == {2.0}


def test_holdback_runs_are_their_own_series_and_never_value_the_incumbent(tmp_path: Path) -> None:
    build_project(tmp_path, with_holdback())
    summary = summarize(Project.at(tmp_path), None)
    chart = progress(summary.state)
    series = chart.series()
    assert {k: len(v) for k, v in series.items()} == {"incumbent runs": 11, "accepted": 4, "rejected": 1,
                                                       "holdback runs": 2}
    assert [p.value for p in series["holdback runs"]] == [0.80, 1.10]
    # The line after the last run: the incumbent's runs after its selection, as `status` values it (the
    # holdback's 0.80 on the incumbent is not one of them).
    assert chart.incumbent[-1] == pytest.approx(0.925) == summary.report["incumbent"]["value"]
    assert chart.incumbent[0] == 1.00 and len(chart.incumbent) == 18
    assert [(x, number) for x, _, number in chart.changes] == [(6, 1), (13, 4)]


def test_the_cli_and_the_api_report_the_same(tmp_path: Path) -> None:
    build_project(tmp_path, with_holdback())
    shown = json.loads(invoke("status", "--format", "json", "--dir", str(tmp_path)).stdout)
    snap = ledgerlab.open(tmp_path).snapshot()
    assert {k: v for k, v in shown.items() if k not in CLOCK} == \
        {k: v for k, v in snap.report.items() if k not in CLOCK}
    assert snap.report["spend"]["unpriced_calls"] == 1
    # The snapshot keeps the names it always had for the stream's facts.
    assert snap.finish_order == snap.state.finish_order and snap.incumbent_at == snap.state.incumbent_at
    assert snap.unpriced_calls == 1 and set(snap.durations.values()) == {2.0}
    assert set(snap.run_started_at) == set(snap.state.runs)


def test_a_campaign_without_its_start_is_one_error(tmp_path: Path) -> None:
    build_project(tmp_path, campaign_events()[1:4])
    with pytest.raises(CampaignError, match="no CampaignStarted event yet; start one with `ledgerlab run`"):
        read_campaign(Project.at(tmp_path).ledger_path, CAMPAIGN)
