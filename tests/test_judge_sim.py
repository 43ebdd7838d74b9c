"""Proof by simulation: the judge played against simulated campaigns exactly as the loop plays it.

Fixed seeds; tolerances are one-sided binomial tests, not eyeballed margins. Run with `-s` to see the
numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ledgerlab.core.judge import JudgeSettings, make_judge
from ledgerlab.testing import judge_sim as sim

STATS = make_judge(JudgeSettings())


def false_accepts(alpha: float, rho: float, seed: int, n: int = 3000) -> list[sim.Outcome]:
    return sim.simulate(STATS, effects=[(1.0, 0.0)], hypotheses=n, rho=rho, alpha=alpha, seed=seed)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_null_false_accept_rate_holds_alpha(rho: float) -> None:
    for alpha, seed in ((0.05, 11), (0.01, 12)):
        out = false_accepts(alpha, rho, seed)
        r, lo, hi, k = sim.rate(out)
        runs = np.mean([o.candidate_runs for o in out])
        print(f"\nA/A rho={rho} alpha={alpha}: false accepts {k}/{len(out)} = {r:.4f} [{lo:.4f}, {hi:.4f}], "
              f"candidate runs/hypothesis {runs:.2f}")
        # H1: rate > alpha would have to be shown at the 1% level for the test to fail.
        assert sps.binomtest(k, len(out), alpha, alternative="greater").pvalue > 0.01


def not_below(k: int, n: int, target: float) -> bool:
    """Whether k of n is consistent with a rate ≥ target (a one-sided binomial test at the 1% level)."""
    return sps.binomtest(k, n, target, alternative="less").pvalue > 0.01


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_power_rises_with_effect(rho: float) -> None:
    # A stream of hypotheses that all carry the effect (the incumbent changes after every accept, so each
    # hypothesis meets an incumbent with few replicates: the hard case), at the default α = 0.01.
    rates = []
    for effect in (0.5, 1.0, 2.0, 3.0):
        rates.append(sim.rate(sim.simulate(STATS, effects=[(1.0, effect)], hypotheses=800, rho=rho, alpha=0.01,
                                           seed=21)))
    print(f"\npower (defaults, alpha=0.01, every hypothesis real), rho={rho}, effects 0.5/1/2/3σ: "
          + " ".join(f"{r[0]:.2f}" for r in rates))
    powers = [r[0] for r in rates]
    assert powers == sorted(powers) and not_below(rates[3][3], 800, 0.9)
    # Target 0.8 at 2σ: met with pairing (ρ = 0.5). Without it (ρ = 0) each new incumbent's mean rests on a
    # few runs (docs/judge.md, "What limits power without pairing"): 0.64 [0.62, 0.65] over 3,000.
    assert not_below(rates[2][3], 800, 0.8 if rho else 0.58)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_power_at_two_sigma_in_a_mostly_null_campaign(rho: float) -> None:
    out = sim.simulate(STATS, effects=[(0.9, 0.0), (0.1, 2.0)], hypotheses=4000, rho=rho, alpha=0.01, seed=24)
    real = [o for o in out if o.effect == 2.0]
    k = sum(o.accepted for o in real)
    print(f"\n2σ changes among 90% null ones, rho={rho}: accepted {k}/{len(real)} = {k / len(real):.2f}")
    # Target 0.8: met with pairing. At ρ = 0 the power is 0.72 over 20,000 hypotheses (0.76 with fresh
    # seeds for every hypothesis): the incumbent's mean is an estimate, and bench/judge_frontier.py shows no
    # design of this family passes 0.81 at ≤ 1.5 runs with an incumbent known from 10 runs, σ known.
    assert not_below(k, len(real), 0.8 if rho else 0.65)


def test_effect_scale_futility_saves_runs_on_null_changes() -> None:
    by_scale = {}
    for scale in ("effect", "p"):
        judge = make_judge(JudgeSettings(futility_scale=scale))
        null = sim.simulate(judge, effects=[(1.0, 0.0)], hypotheses=2000, rho=0.5, alpha=0.01, seed=23)
        real = sim.simulate(judge, effects=[(1.0, 2.0)], hypotheses=600, rho=0.5, alpha=0.01, seed=22)
        by_scale[scale] = (np.mean([o.candidate_runs for o in null]), sim.rate(real)[0])
    print(f"\nnull runs / power at 2σ: effect-scale {by_scale['effect']}, p-scale {by_scale['p']}")
    assert by_scale["effect"][0] < by_scale["p"][0] - 0.1  # fewer runs per null change ...
    assert by_scale["effect"][1] > by_scale["p"][1] - 0.05  # ... for about the same power


def test_greedy_as_the_cli_runs_it_keeps_a_quarter_of_useless_changes() -> None:
    # `--judge greedy` compares every change with the incumbent's one run (a fresh one only after an accept):
    # a lucky run blocks every useless change after it, so in campaigns of 50 it keeps 25%, not half (the CLI
    # measured 23–26%). The campaign is the unit of the interval: its verdicts share one incumbent run.
    s = sim.cli_settings("greedy")
    assert sim.loop_params(s) == {"calibration_runs": 1, "confirm_runs": 0, "window": 1}
    out = sim.simulate(make_judge(s), effects=[(1.0, 0.0)], hypotheses=200 * 50, rho=0.0, alpha=0.01, seed=31,
                       per_campaign=50, **sim.loop_params(s))
    r, lo, hi = sim.clustered_rate(out, 50, level=0.99)
    exact = sim.greedy_useless_kept(50)
    print(f"\ngreedy, CLI setup, campaigns of 50 useless changes: kept {r:.3f} [{lo:.3f}, {hi:.3f}], exact {exact:.4f}")
    assert 0.24 < exact < 0.26 and lo < exact < hi
    assert sim.greedy_useless_kept(10) > exact > sim.greedy_useless_kept(200)  # falls with campaign length


def test_greedy_on_ab_runs_keeps_about_half_of_useless_changes() -> None:
    # A/B runs measure each change against its own control, so every verdict is a fresh coin flip (a tie loses).
    rng = np.random.default_rng(32)
    judge = make_judge(sim.cli_settings("greedy"))
    out = [sim.play_proportion(judge, rng, 0.05, 0.0, 25_000, 0.01) for _ in range(4000)]
    r, lo, hi, k = sim.rate(out)
    pmf = sps.binom.pmf(np.arange(3000), 25_000, 0.05)
    want = (1.0 - float(np.sum(pmf**2))) / 2.0  # P(candidate's count > control's)
    print(f"\ngreedy A/B useless kept {r:.3f} [{lo:.3f}, {hi:.3f}], exact {want:.4f}")
    assert sps.binomtest(k, len(out), want).pvalue > 0.01


@pytest.mark.parametrize("effect", [1.0, 2.0])
def test_mostly_null_campaign_costs_about_one_run(effect: float) -> None:
    out = sim.simulate(STATS, effects=[(0.9, 0.0), (0.1, effect)], hypotheses=3000, rho=0.0, alpha=0.01,
                       seed=41)
    m, lo, hi = sim.mean_ci([o.candidate_runs for o in out])
    inc = np.mean([o.incumbent_runs for o in out])
    print(f"\n90% null / 10% at {effect}σ: candidate runs {m:.2f} [{lo:.2f}, {hi:.2f}], new incumbent runs {inc:.2f}")
    # Target ≤ 1.5 (bench/judge.py's mix, 5% at 1σ and 5% at 2σ), tested like the rates here: the mean must
    # not be shown above it at the 1% level. With 10% at 2σ it is 1.56: since accepts need 3 runs
    # (`accept_from`, which keeps α on skewed noise), each real change costs at least 3; before, 1.49.
    se = (hi - lo) / (2 * sps.t.isf(0.025, len(out) - 1))
    assert (m - (1.5 if effect == 1.0 else 1.6)) / se < sps.norm.isf(0.01)


def test_judge_never_asks_beyond_last_look() -> None:
    out = sim.simulate(STATS, effects=[(0.5, 0.0), (0.5, 1.0)], hypotheses=500, rho=0.5, alpha=0.05, seed=51)
    runs = [o.candidate_runs for o in out]
    assert max(runs) <= 8 and max(o.looks for o in out) <= 6 and max(runs) >= 6  # late looks are reached


def test_proportion_tests_hold_alpha_and_gain_power() -> None:
    judge = make_judge(JudgeSettings(looks=(1, 2, 4)))
    rng = np.random.default_rng(61)
    for trials, tag in ((40, "exact"), (2000, "z")):
        null = [sim.play_proportion(judge, rng, 0.1, 0.0, trials, 0.05) for _ in range(2000)]
        r, lo, hi, k = sim.rate(null)
        lifts = (0.1, 0.2) if tag == "exact" else (0.01, 0.02)
        power = [sim.rate([sim.play_proportion(judge, rng, 0.1, d, trials, 0.05) for _ in range(300)])[0]
                 for d in lifts]
        print(f"\nproportions ({tag}, {trials}/arm/run): A/A {r:.4f} [{lo:.4f}, {hi:.4f}], power {power}")
        assert sps.binomtest(k, len(null), 0.05, alternative="greater").pvalue > 0.01
        assert power[0] < power[1] and power[1] >= 0.5


def test_frontier_model_holds_alpha_and_shows_what_the_incumbent_costs() -> None:
    # bench/judge_frontier.py: the ρ = 0 bound on power at ≤ 1.5 runs rests on this model being right.
    # A test of a bench script (the only bench import in tests/): skipped where ledgerlab is installed.
    frontier = pytest.importorskip("ledgerlab.bench.judge_frontier", reason="bench/ is scripts in the source tree, not part of the installed package")
    paths = frontier.Paths(40_000, seed=3)
    ours = frontier.shipped(JudgeSettings(alpha=0.01))
    known, weak = paths.outcome(ours, math.inf), paths.outcome(ours, 5.0)
    slack = 3 * math.sqrt(0.01 * 0.99 / 40_000)
    print(f"\nfrontier model, shipped design: known incumbent {known}, incumbent from 5 runs {weak}")
    assert known.false_accept <= 0.01 + slack and weak.false_accept <= 0.01 + slack
    assert 0.8 < known.power_2sigma < 0.9 and known.runs < 1.5
    assert weak.power_2sigma < known.power_2sigma - 0.08  # the incumbent's error is shared by every look
    tuned = frontier.calibrated(paths, (1, 2, 3, 4, 6, 8), 0.25, 0.7, 0.75, 0.01, math.inf)
    assert abs(paths.outcome(tuned, math.inf).false_accept - 0.01) < slack
