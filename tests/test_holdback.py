"""The holdback: the improvement `status` reports comes from incumbent-vs-baseline windows no selection used."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ledgerlab.core import holdback
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.judge import JudgeSettings
from ledgerlab.core.planner import RunIndex
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.core.registry import load_proposer
from ledgerlab.core.report import status_report
from ledgerlab.core.state import CampaignState, RunRecord
from ledgerlab.domains.marketing.domain import MarketingDomain
from ledgerlab.storage.memory import InMemoryLedger

RATE = MetricSpec(name="conversion_rate", direction="maximize", kind="proportion")


@pytest.fixture(scope="module")
def finished() -> Iterator[tuple[CampaignState, CampaignConfig]]:
    """A marketing campaign on a market with real levers, run to its visitor budget (the shipped defaults)."""
    config = CampaignConfig(domain="marketing", seed=7, domain_options={"market_seed": 7},
                            budgets={"max_units": 1_500_000})
    domain = MarketingDomain(market_seed=7)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            campaign = Campaign(InMemoryLedger(), domain, config,
                                agents=[Agent("agent-0", load_proposer(config.proposer))],
                                executor=LocalExecutor(domain), runs_dir=Path(tmp), campaign_id="hb")
            yield campaign.run(), config
    finally:
        domain.close()


def test_the_final_incumbent_is_measured_against_the_baseline_within_the_budget(finished) -> None:
    state, config = finished
    assert state.status == "finished" and state.incumbent_id != state.started.baseline_candidate_id
    held = holdback.runs_of(state, state.incumbent_id)
    settings = JudgeSettings(**state.started.judge)
    assert 2 <= len(held) <= settings.holdback_max_runs
    gain = status_report(state, now=state.last_at)["improvement"]
    assert gain["method"].startswith("holdback") and gain["status"] == "measured"
    half = (gain["relative_ci_high"] - gain["relative_ci_low"]) / 2
    # Sized for ± holdback_precision; the estimate of the windows it takes is itself noisy.
    assert half <= settings.holdback_precision * 1.25 or len(held) == settings.holdback_max_runs
    # The reserve kept the windows inside the visitor budget (at most one window over, as any run can be).
    assert state.units <= config.budgets.max_units + max(float(r.metrics["units"]) for r in held)


def test_holdback_windows_pit_the_incumbent_against_the_baseline_on_their_own_seeds(finished) -> None:
    state, _ = finished
    held = [r for r in state.runs.values() if r.role == holdback.ROLE]
    used = {r.seed for r in state.runs.values() if r.role != holdback.ROLE}
    assert held and not used & {r.seed for r in held}
    assert all(r.hypothesis_id is None and r.control_value is not None for r in held)


def test_the_judge_never_sees_holdback_runs(finished) -> None:
    state, _ = finished
    index = RunIndex.of(state)
    seen = [r for runs in index.incumbent.values() for r in runs] + \
        [r for runs in index.by_hypothesis.values() for r in runs]
    assert seen and all(r.role != holdback.ROLE for r in seen)


def test_a_campaign_recorded_without_the_holdback_resumes_without_it() -> None:
    recorded = JudgeSettings().model_dump(mode="json")
    recorded.pop("holdback_max_runs")
    recorded.pop("holdback_precision")
    resumed = JudgeSettings(**{"guardrails": False, "holdback_max_runs": 0, **recorded})
    assert resumed.holdback_max_runs == 0


# ------------------------------------------------------------------------------------------ the estimate


def _window(i: int, s1: int, n1: int, s0: int, n0: int) -> RunRecord:
    return RunRecord(run_id=f"r{i}", candidate_id="inc", hypothesis_id=None, role=holdback.ROLE, seed=i,
                     attempt=1, status="finished", value=s1 / n1, control_value=s0 / n0,
                     metrics={"successes": s1, "trials": n1}, control_metrics={"successes": s0, "trials": n0})


def test_the_relative_lift_is_the_pooled_ratio_with_the_delta_method_interval() -> None:
    runs = [_window(0, 130, 2000, 100, 2000), _window(1, 120, 2000, 110, 2000)]
    lift = holdback.measure(RATE, runs)
    p1, p0 = 250 / 4000, 210 / 4000
    assert lift.relative == pytest.approx(p1 / p0 - 1)
    se = math.sqrt(p1 * (1 - p1) / 4000 / p0**2 + p1**2 * p0 * (1 - p0) / 4000 / p0**4)
    assert lift.relative_high - lift.relative == pytest.approx(1.959964 * se)
    assert lift.effect == pytest.approx(p1 - p0) and lift.runs == 2
    down = holdback.measure(RATE.model_copy(update={"direction": "minimize"}), runs)
    assert down.relative == pytest.approx(-(p1 / p0 - 1))


@pytest.mark.parametrize("spread", [0.0, 0.03])
def test_the_relative_interval_covers_the_truth_at_its_level(spread: float) -> None:
    # Six windows of 12,500 visitors per arm of a +12% page; each window's base rate and (with `spread`) its
    # lift vary with the hours it covers, around the week's. The interval must cover at least its 95%.
    rng = np.random.default_rng(17)
    lift, n, trials, hits, widths = 0.12, 6, 1000, 0, []
    for _ in range(trials):
        p0 = 0.04 * np.exp(rng.normal(0, 0.1, n))
        s1, s0 = rng.binomial(12_500, p0 * (1 + lift + rng.normal(0, spread, n))), rng.binomial(12_500, p0)
        got = holdback.measure(RATE, [_window(i, int(a), 12_500, int(b), 12_500) for i, (a, b) in
                                      enumerate(zip(s1, s0))])
        hits += got.relative_low <= lift <= got.relative_high
        widths.append(got.relative_half_width)
    # 1,000 draws: a binomial sd of 0.7 points. Taking the wider of the units' and the windows' intervals is
    # conservative (97-98% here), never below nominal; and not so wide that ±7% half-widths become ±10%.
    assert 0.935 <= hits / trials <= 0.99
    assert np.mean(widths) < 0.085


def test_windows_needed_shrink_with_the_precision_asked() -> None:
    state = CampaignState(campaign_id="c")
    from ledgerlab.storage import events as ev

    state._apply(ev.CampaignStarted(domain="m", metric=RATE.model_dump(), design="concurrent", config={},
                                    judge={}, budgets={}, baseline_files={}, baseline_candidate_id="base",
                                    environment={}, seed=0, seed_base=0), datetime(2026, 1, 1, tzinfo=UTC))
    for i in range(3):  # the baseline's A/A calibration windows
        state.runs[f"c{i}"] = RunRecord(run_id=f"c{i}", candidate_id="base", hypothesis_id=None, role="incumbent",
                                        seed=i, attempt=1, status="finished", value=0.04, control_value=0.04,
                                        metrics={"successes": 500, "trials": 12_500, "units": 25_000},
                                        control_metrics={"successes": 500, "trials": 12_500})
    state.incumbent_parent["inc"], state.incumbent_id = "base", "inc"
    loose, tight = (holdback.runs_needed(state, JudgeSettings(holdback_precision=p)) for p in (0.10, 0.05))
    assert 2 <= loose < tight <= JudgeSettings().holdback_max_runs
    assert holdback.reserve_units(state, JudgeSettings(holdback_precision=0.05)) == tight * 25_000
