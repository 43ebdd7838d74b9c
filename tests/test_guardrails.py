"""Guardrails and per-unit-mean metrics: Welch's test from sums, its A/A error rate, the loop's use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core import stats
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.effects import confirmed
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.guardrails import check, guardrails_of, veto
from ledgerlab.core.judge import Evidence, Judgement, JudgeSettings, make_judge
from ledgerlab.core.knobs import read_knob, write_knob
from ledgerlab.core.protocols import Guardrail, Knob, MetricSpec, Proposal, ProposalContext
from ledgerlab.core.state import CampaignState
from ledgerlab.domains.marketing.domain import REVENUE_GUARDRAIL, MarketingDomain
from ledgerlab.domains.marketing.variant import KNOBS_BY_NAME
from ledgerlab.errors import CampaignError, ConfigError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.storage.memory import InMemoryLedger

REVENUE = Guardrail(name="revenue", direction="maximize", n_key="n", sum_key="s", sumsq_key="ss", alpha=0.05)


def sums(x: np.ndarray) -> dict[str, float]:
    return {"n": float(len(x)), "s": float(x.sum()), "ss": float((x**2).sum())}


def triple(x: np.ndarray) -> tuple[float, float, float]:
    return float(len(x)), float(x.sum()), float((x**2).sum())


def revenue(rng: np.random.Generator, n: int, rate: float = 0.04, scale: float = 1.0) -> np.ndarray:
    """Per-visitor revenue: most zero, buyers lognormal (heavy-tailed), winsorized at 400 like the market."""
    buys = rng.random(n) < rate
    return np.minimum(np.where(buys, scale * rng.lognormal(4.0, 1.0, n), 0.0), 400.0)


def test_sums_test_is_welch_on_the_raw_values() -> None:
    rng = np.random.default_rng(3)
    a, b = revenue(rng, 3000, scale=1.2), revenue(rng, 2500)
    r = stats.sums_test(triple(a), triple(b), "maximize")
    ref = sps.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    assert r.effect == pytest.approx(a.mean() - b.mean())
    shifted = stats.sums_test(triple(a), triple(b), "maximize", delta=0.5)
    ref_shifted = sps.ttest_ind(a - 0.5, b, equal_var=False, alternative="greater")
    assert shifted.p_value == pytest.approx(ref_shifted.pvalue)
    smaller = stats.sums_test(triple(b), triple(a), "minimize")
    assert smaller.p_value == pytest.approx(ref.pvalue, rel=1e-6)  # minimize: b below a is better


def test_too_little_data_gives_no_test() -> None:
    assert stats.sums_test((1.0, 3.0, 9.0), (1.0, 5.0, 25.0), "maximize").p_value is None
    assert check(REVENUE, [({"n": 1, "s": 2.0, "ss": 4.0}, {"n": 1, "s": 1.0, "ss": 1.0})]) is None
    assert check(REVENUE, [({"other": 1}, {"other": 2})]) is None  # runs that report no sums are skipped


def test_one_unit_against_many_is_a_pooled_variance_t() -> None:
    """One candidate run against the incumbent's runs: Student's t with the incumbent's variance and df."""
    inc = np.array([10.0, 12.0, 11.0, 13.0, 9.0])
    r = stats.sums_test((1.0, 16.0, 256.0), triple(inc), "minimize")  # one run at 16: worse when minimizing
    se = inc.std(ddof=1) * np.sqrt(1 + 1 / len(inc))
    assert r.test == "t (one unit, pooled var)" and r.df == len(inc) - 1
    assert r.statistic == pytest.approx((inc.mean() - 16.0) / se)
    assert r.p_value == pytest.approx(sps.t.sf((inc.mean() - 16.0) / se, len(inc) - 1))
    swapped = stats.sums_test(triple(inc), (1.0, 16.0, 256.0), "maximize")  # the one unit may be either side
    assert swapped.p_value == pytest.approx(r.p_value)


def test_a_one_run_candidate_is_checked_against_all_the_incumbents_runs() -> None:
    """Independent designs: runs of one arm only ({} on the other side) pool per side."""
    memory = Guardrail(name="mem", direction="minimize", n_key="n", sum_key="s", sumsq_key="ss", margin=0.1)
    rng = np.random.default_rng(4)

    def run(value: float) -> dict[str, float]:
        return {"n": 1.0, "s": value, "ss": value * value}

    incumbent = [({}, run(float(v))) for v in rng.normal(500.0, 5.0, 6)]
    grown = check(memory, [(run(650.0), {}), *incumbent])
    assert grown is not None and grown.harmed and (grown.n_candidate, grown.n_incumbent) == (1, 6)
    within = check(memory, [(run(520.0), {}), *incumbent])
    assert within is not None and not within.harmed
    # calibration: a candidate exactly at the margin is flagged about α of the time, no more
    flagged = 0
    for _ in range(2000):
        inc = [({}, run(float(v))) for v in rng.normal(500.0, 5.0, 4)]
        got = check(memory, [(run(float(rng.normal(550.0, 5.0))), {}), *inc])
        flagged += got is not None and got.harmed
    assert sps.binomtest(flagged, 2000, 0.05, alternative="greater").pvalue > 0.01, flagged / 2000


def test_aa_false_harm_rate_holds_on_heavy_tailed_revenue() -> None:
    """A/A: identical arms, 3 runs of 2,000 visitors per hypothesis; harm flagged ≤ α (binomial check)."""
    rng = np.random.default_rng(11)
    trials, flagged = 2000, 0
    for _ in range(trials):
        runs = [(sums(revenue(rng, 2000)), sums(revenue(rng, 2000))) for _ in range(3)]
        result = check(REVENUE, runs)
        assert result is not None
        flagged += result.harmed
    # one-sided: the observed rate must not be significantly above α = 0.05
    assert sps.binomtest(flagged, trials, 0.05, alternative="greater").pvalue > 0.01, flagged / trials


def test_a_real_loss_is_flagged_and_pooled_over_runs() -> None:
    rng = np.random.default_rng(5)
    runs = [(sums(revenue(rng, 20_000, scale=0.7)), sums(revenue(rng, 20_000))) for _ in range(2)]
    result = check(REVENUE, runs)
    assert result is not None and result.harmed and result.n_candidate == 40_000
    assert result.effect_rel == pytest.approx(-0.3, abs=0.08)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < result.effect < result.ci_high
    assert "revenue -" in result.describe() or "revenue −" in result.describe()


# ------------------------------------------------------------------------------- through the loop


class Changes:
    """Proposes the given knob changes in order, each on the incumbent of its time, then stops."""

    name = "changes"

    def __init__(self, *changes: dict[str, Any], knobs: Mapping[str, Knob] = KNOBS_BY_NAME) -> None:
        self.changes, self.knobs = changes, knobs

    def propose(self, context: ProposalContext, sink: Any = None) -> Proposal | None:
        if len(context.history) >= len(self.changes):
            return None
        change = self.changes[len(context.history)]
        files = dict(context.incumbent_files)
        for name, value in change.items():
            files = write_knob(files, self.knobs[name], value)
        return Proposal(rationale=f"set {change}", files=files, changes=change)


def run_marketing(tmp_path: Path, changes: dict[str, Any], judge: dict[str, Any] | None = None,
                  store: Any = None, **options: Any) -> CampaignState:
    domain = MarketingDomain(visitors_per_run=400_000, **options)
    config = CampaignConfig(domain="marketing", domain_options={"visitors_per_run": 400_000, **options},
                            judge={"calibration_runs": 1, **(judge or {})}, budgets={"max_hypotheses": 1})
    try:
        return Campaign(store or InMemoryLedger(), domain, config, agents=[Agent("a", Changes(changes))],
                        executor=LocalExecutor(domain), runs_dir=tmp_path / "runs").run()
    finally:
        domain.close()


def only_verdict(state: CampaignState) -> Any:
    (record,) = state.hypotheses.values()
    return record, record.verdict


def test_a_conversion_win_that_loses_revenue_is_rejected_by_the_guardrail(tmp_path: Path) -> None:
    # On the canonical market: conversion about +13%, revenue per visitor about -28%.
    cut = {"free_shipping": True, "discount_pct": 20, "price": 39.0}
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        record, verdict = only_verdict(run_marketing(tmp_path, cut, store=store))
    assert record.status == "rejected" and "guardrail shows harm" in verdict.reason
    (guard,) = verdict.details["guardrails"]
    assert guard["name"] == "revenue_per_visitor" and guard["harmed"] and guard["effect_rel"] < -0.15
    assert verdict.effect > 0  # the primary test's numbers stay: conversion did improve
    shown = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["show", "1", "--dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "guardrail revenue_per_visitor" in shown.output and "HARMED: blocks the change" in shown.output
    assert verdict.details["guardrail_veto"] is True
    status = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["status", "--dir", str(tmp_path)])
    assert status.exit_code == 0 and "1 rejected (1 of them by a guardrail)" in status.output, status.output

    state = run_marketing(tmp_path / "off", cut, judge={"guardrails": False})
    record, verdict = only_verdict(state)
    assert record.status == "accepted" and "guardrails" not in verdict.details
    # The confirmation pools the fresh A/B runs' visitors: a tight interval, not a t over 2 runs.
    check_ = confirmed(state, record)
    assert check_ is not None and check_.method.startswith("two-proportion z on 2 fresh same-window")
    assert check_.low is not None and check_.high is not None and 0 < check_.low < check_.effect < check_.high
    assert check_.high - check_.low < 0.005
    assert "guardrail_veto" not in verdict.details


def test_revenue_per_visitor_as_the_metric_uses_welch_on_winsorized_sums(tmp_path: Path) -> None:
    # A price rise: conversion about -5%, revenue per visitor about +33%.
    record, verdict = only_verdict(run_marketing(tmp_path, {"price": 69.0}, metric="revenue_per_visitor"))
    assert record.status == "accepted" and verdict.test == "welch (sums)"
    assert "guardrails" not in verdict.details  # revenue is the metric itself
    record, verdict = only_verdict(run_marketing(tmp_path / "conv", {"price": 69.0}))
    assert record.status == "rejected" and verdict.test.startswith("two-proportion")


def test_revenue_as_the_metric_holds_alpha_under_the_sequential_policy() -> None:
    """A/A through the real judge on per-unit sums: false accepts of 1,500 hypotheses ≤ α (binomial check)."""
    metric = MetricSpec(name="rpv", direction="maximize", alpha=0.05, sums=("n", "s", "ss"))
    judge = make_judge(JudgeSettings(alpha=0.05))
    rng = np.random.default_rng(21)
    trials, accepted, runs = 1500, 0, 0
    for _ in range(trials):
        rows: list[tuple[float, ...]] = []
        need = judge.first_n()
        while True:
            while len(rows) < need:
                rows.append((*triple(revenue(rng, 1500)), *triple(revenue(rng, 1500))))
            j = judge.judge(Evidence(metric=metric, design="concurrent", sums=tuple(rows)), 0.05)  # type: ignore[arg-type]
            if j.decision != "more":
                break
            need = j.need
        accepted += j.decision == "accept"
        runs += len(rows)
        assert j.test == "welch (sums)"
    assert sps.binomtest(accepted, trials, 0.05, alternative="greater").pvalue > 0.01, accepted / trials
    assert runs / trials < 2.0  # futility stops most null changes after one run


def test_veto_only_turns_harmed_accepts_down() -> None:
    rng = np.random.default_rng(8)
    harmed = check(REVENUE, [(sums(revenue(rng, 40_000, scale=0.6)), sums(revenue(rng, 40_000)))])
    fine = check(REVENUE, [(sums(revenue(rng, 40_000)), sums(revenue(rng, 40_000)))])
    assert harmed is not None and harmed.harmed and fine is not None and not fine.harmed
    accept = Judgement(decision="accept", need=0, test="t", statistic=3.0, p_value=0.001, effect=0.1,
                       ci_low=0.05, ci_high=0.15, n_candidate=2, n_incumbent=2, alpha_spent=0.01, look=2,
                       reason="accepted")
    assert veto(accept, [fine]) is accept
    turned = veto(accept, [fine, harmed])
    assert turned.decision == "reject" and "revenue" in turned.reason and turned.effect == accept.effect
    reject = accept.model_copy(update={"decision": "reject"})
    assert veto(reject, [harmed]) is reject


def test_malformed_guardrails_are_a_clear_campaign_error() -> None:
    class Odd(MarketingDomain):
        guardrails = ("revenue",)  # type: ignore[assignment]

    assert guardrails_of(MarketingDomain()) == (REVENUE_GUARDRAIL,)
    assert guardrails_of(object()) == ()
    with pytest.raises(CampaignError, match="must be a tuple of ledgerlab.core.protocols.Guardrail"):
        guardrails_of(Odd.__new__(Odd))


def test_a_campaign_started_before_guardrails_resumes_without_them(tmp_path: Path) -> None:
    domain = MarketingDomain(visitors_per_run=2_000)
    config = CampaignConfig(domain="marketing", budgets={"max_hypotheses": 0})
    agents = [Agent("a", Changes({}))]
    first = Campaign(InMemoryLedger(), domain, config, agents=agents, executor=LocalExecutor(domain),
                     runs_dir=tmp_path / "runs")
    assert first.settings.guardrails is True
    first.run()
    old = InMemoryLedger()  # the same opening, as a ledger from before guardrails recorded it (schema v2)
    (started, *rest) = [row.event() for row in first.store.read(first.campaign_id)]
    judge = {k: v for k, v in started.judge.items() if k != "guardrails"}
    opening = started.model_copy(update={"judge": judge, "guardrails": None})
    encode = ev.encode
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ev, "encode", lambda event: (event.type, 2, encode(event)[2]))
        old.append(first.campaign_id, [opening], expected_version=0)
    old.append(first.campaign_id, rest, expected_version=1)
    resumed = Campaign(old, domain, config, agents=agents, executor=LocalExecutor(domain),
                       runs_dir=tmp_path / "runs", campaign_id=first.campaign_id)
    assert resumed.settings.guardrails is False and resumed.guardrails == ()
    domain.close()


def test_a_resumed_campaign_checks_the_guardrails_its_ledger_recorded(tmp_path: Path) -> None:
    """The guardrails are part of the campaign's record: a domain that changed since cannot swap them."""
    domain = MarketingDomain(visitors_per_run=2_000)
    config = CampaignConfig(domain="marketing", budgets={"max_hypotheses": 0})
    agents = [Agent("a", Changes({}))]
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        first = Campaign(store, domain, config, agents=agents, executor=LocalExecutor(domain),
                         runs_dir=tmp_path / "runs")
        first.run()
        assert first.state.guardrails == (REVENUE_GUARDRAIL,)
        changed = MarketingDomain(visitors_per_run=2_000)
        changed.guardrails = ()  # the domain no longer declares the guardrail
        resumed = Campaign(store, changed, config, agents=agents, executor=LocalExecutor(changed),
                           runs_dir=tmp_path / "runs", campaign_id=first.campaign_id)
        assert resumed.guardrails == (REVENUE_GUARDRAIL,)
        changed.close()
    domain.close()
    status = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["status", "--dir", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert "revenue_per_visitor (must not get worse, alpha 0.05)" in status.output

    off = Campaign(InMemoryLedger(), domain, config.model_copy(update={"judge": config.judge.model_copy(
        update={"guardrails": False})}), agents=agents, executor=LocalExecutor(domain), runs_dir=tmp_path / "r2")
    assert off.guardrails == () and off._started_event().guardrails == []


def test_a_margin_tolerates_a_small_loss_but_not_a_larger_one() -> None:
    """Non-inferiority: a 10% revenue loss is harm at margin 0, tolerated at 25%; a 50% loss is not."""
    rng = np.random.default_rng(5)
    inc = sums(revenue(rng, 400_000))
    small = sums(revenue(rng, 400_000, scale=0.90))
    large = sums(revenue(rng, 400_000, scale=0.50))
    strict, tolerant = REVENUE, REVENUE.model_copy(update={"margin": 0.25})
    assert check(strict, [(small, inc)]).harmed  # type: ignore[union-attr]
    lenient = check(tolerant, [(small, inc)])
    assert lenient is not None and not lenient.harmed and lenient.margin == 0.25
    assert "margin 25.0%" in lenient.describe()
    worse = check(tolerant, [(large, inc)])
    assert worse is not None and worse.harmed and worse.effect_rel is not None and worse.effect_rel < -0.25
    # The interval is the effect's, whatever the margin: only the question asked of it changes.
    plain = check(strict, [(large, inc)])
    assert plain is not None and (plain.ci_low, plain.ci_high) == (worse.ci_low, worse.ci_high)


def test_the_margin_holds_alpha_at_its_boundary() -> None:
    """A candidate exactly `margin` worse is flagged about α of the time (the test's size), no more."""
    rng = np.random.default_rng(9)
    guard = REVENUE.model_copy(update={"margin": 0.05})
    flagged = 0
    for _ in range(1000):
        got = check(guard, [(sums(revenue(rng, 20_000, scale=0.95)), sums(revenue(rng, 20_000)))])
        flagged += got is not None and got.harmed
    assert sps.binomtest(flagged, 1000, 0.05, alternative="greater").pvalue > 0.01, flagged


def test_the_marketing_revenue_margin_option(tmp_path: Path) -> None:
    domain = MarketingDomain(visitors_per_run=2_000, revenue_margin=0.02)
    (guard,) = domain.guardrails
    assert guard.margin == 0.02 and guard.name == REVENUE_GUARDRAIL.name
    with pytest.raises(ConfigError, match="revenue_margin"):
        MarketingDomain(revenue_margin=1.5)
    config = CampaignConfig(domain="marketing", budgets={"max_hypotheses": 0},
                            domain_options={"visitors_per_run": 2_000, "revenue_margin": 0.02})
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        Campaign(store, domain, config, agents=[Agent("a", Changes({}))], executor=LocalExecutor(domain),
                 runs_dir=tmp_path / "runs").run()
    domain.close()
    status = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["status", "--dir", str(tmp_path)])
    assert status.exit_code == 0 and "must not get worse by more than 2.0%" in status.output, status.output


def test_a_deterministic_guardrail_is_judged_by_its_values() -> None:
    """No variance in either arm (e.g. a model's memory): worse beyond the margin is harm, within it is not."""
    memory = Guardrail(name="peak_memory", direction="minimize", n_key="n", sum_key="s", sumsq_key="ss",
                       margin=0.05)
    def const(value: float, n: int = 3) -> dict[str, float]:
        return {"n": float(n), "s": value * n, "ss": value * value * n}
    grown = check(memory, [(const(110.0), const(100.0))])
    assert grown is not None and grown.harmed and grown.p_worse == 0.0
    within = check(memory, [(const(103.0), const(100.0))])
    assert within is not None and not within.harmed and within.p_worse == 1.0


def test_an_ab_campaigns_improvement_adds_the_confirmed_effects_along_its_lineage(tmp_path: Path) -> None:
    """Same-window effects, each from fresh runs, add up; the interval adds their variances (no holdback)."""
    from ledgerlab.core.effects import confirmed, finished, fresh_runs, improvement

    domain = MarketingDomain(visitors_per_run=800_000, candidates_per_run=1)  # each change on its own
    config = CampaignConfig(domain="marketing",
                            domain_options={"visitors_per_run": 800_000, "candidates_per_run": 1},
                            judge={"calibration_runs": 1, "guardrails": False, "holdback_max_runs": 0},
                            budgets={"max_hypotheses": 2})
    proposer = Changes({"free_shipping": True, "discount_pct": 20, "price": 39.0}, {"form_fields": 2})
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        state = Campaign(store, domain, config, agents=[Agent("a", proposer)], executor=LocalExecutor(domain),
                         runs_dir=tmp_path / "runs").run()
    domain.close()
    first, second = state.hypotheses.values()
    assert first.status == second.status == "accepted", (first.reason, second.reason)
    links = [confirmed(state, h) for h in (first, second)]
    assert all(link is not None and link.low is not None for link in links)
    assert state.started is not None
    total = improvement(state, fresh_runs(state, state.incumbent_id),
                        finished(state, state.started.baseline_candidate_id))
    assert total is not None and total.method.startswith("sum of the 2 accepted changes")
    assert total.effect == pytest.approx(sum(link.effect for link in links))  # type: ignore[union-attr]
    halves = [(link.high - link.low) / 2 for link in links]  # type: ignore[operator,union-attr]
    assert (total.high - total.low) / 2 == pytest.approx(sum(h * h for h in halves) ** 0.5)  # type: ignore[operator]
    status = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["status", "--dir", str(tmp_path)])
    assert status.exit_code == 0 and "sum of the 2 accepted changes' effects" in status.output, status.output
    # The incumbents view gives the same numbers in SQL.
    from ledgerlab.storage.ledger import read_only_connection

    with read_only_connection(tmp_path / ".ledgerlab" / "ledger.duckdb") as con:
        rows = con.execute("SELECT hypothesis_id, same_window_effect, same_window_improvement FROM incumbents "
                           "ORDER BY since").fetchall()
    assert [r[0] for r in rows] == [None, first.hypothesis_id, second.hypothesis_id]
    assert rows[0][1] is None and rows[0][2] == 0.0
    assert [r[1] for r in rows[1:]] == pytest.approx([link.effect for link in links])  # type: ignore[union-attr]
    assert rows[2][2] == pytest.approx(total.effect)


def test_an_independent_domains_guardrail_checks_a_change_through_the_loop(tmp_path: Path) -> None:
    """Seeded runs: a change that lowers the loss but grows `size` by 15% (margin 5%) is vetoed."""
    from ledgerlab.testing import KNOBS as TOY_KNOBS
    from ledgerlab.testing import ToyDomain

    size = Guardrail(name="size", direction="minimize", n_key="one", sum_key="size", sumsq_key="size_sq",
                     margin=0.05, unit="MB")

    class Sized(ToyDomain):
        guardrails = (size,)

        def run(self, request: Any) -> Any:
            result = super().run(request)
            y = float(read_knob(dict(request.files), TOY_KNOBS[1]))
            value = 100.0 + 10.0 * y + request.seed % 3  # a little spread, like a process's peak memory
            return result.model_copy(update={"metrics": {**result.metrics, "one": 1, "size": value,
                                                         "size_sq": value * value}})

    def campaign(judge: dict[str, Any], where: Path) -> CampaignState:
        domain = Sized(noise=0.01, seed_noise=0.02)
        config = CampaignConfig(domain="toy", judge=judge, budgets={"max_hypotheses": 1})
        proposer = Changes({"Y": 5}, knobs={k.name: k for k in TOY_KNOBS})
        return Campaign(InMemoryLedger(), domain, config, agents=[Agent("a", proposer)],
                        executor=LocalExecutor(domain), runs_dir=where).run()

    record, verdict = only_verdict(campaign({}, tmp_path / "on"))
    assert record.status == "rejected" and verdict.effect > 0, verdict.reason
    (guard,) = verdict.details["guardrails"]
    assert guard["name"] == "size" and guard["harmed"] and guard["effect_rel"] == pytest.approx(-0.15, abs=0.03)
    assert verdict.details.get("guardrail_veto") is True, verdict.reason
    record, verdict = only_verdict(campaign({"guardrails": False}, tmp_path / "off"))
    assert record.status == "accepted", verdict.reason

