"""α under skewed and heavy-tailed noise (latency, revenue, reward), played through the simulator.

Fixed seeds. A rate "holds α" when a one-sided binomial test does not show it above α at the 1% level:
with 4,000 useless changes the binomial SE at α = 1% is 0.157 points, so the test fails only when the
rate is above about 1.37% (α + 2.33 SE); `bench/judge.py --skew` measures the rates on 20,000 (docs/judge.md).
Run with `-s` to see the numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ledgerlab.core import stats
from ledgerlab.core.judge import Evidence, JudgeSettings, make_judge
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.testing import judge_sim as sim

N = 4000
ALPHA = 0.01


def not_above(k: int, n: int, target: float) -> bool:
    """Whether k of n is consistent with a rate ≤ target (a one-sided binomial test at the 1% level)."""
    return sps.binomtest(k, n, target, alternative="greater").pvalue > 0.01


def null_rate(settings: JudgeSettings, noise: str, metric: MetricSpec, rho: float, seed: int) -> tuple:
    out = sim.simulate(make_judge(settings), effects=[(1.0, 0.0)], hypotheses=N, rho=rho, alpha=ALPHA,
                       seed=seed, noise=noise, metric=metric)
    return sim.rate(out)


@pytest.mark.parametrize("rho", [0.0, 0.5])
@pytest.mark.parametrize("noise", ["lognormal", "t3"])
def test_alpha_holds_on_skewed_and_heavy_tailed_noise(noise: str, rho: float) -> None:
    for seed, metric in ((101, sim.GAIN), (102, sim.LOSS)):  # right skew is "better" for a maximized metric
        r, lo, hi, k = null_rate(JudgeSettings(), noise, metric, rho, seed)
        print(f"\n{noise} {metric.direction} rho={rho}: false accepts {k}/{N} = {r:.4f} [{lo:.4f}, {hi:.4f}]")
        assert not_above(k, N, ALPHA)


def lognormal_gain_rate(settings: JudgeSettings, n: int) -> tuple:
    out = sim.simulate(make_judge(settings), effects=[(1.0, 0.0)], hypotheses=n, rho=0.0, alpha=ALPHA, seed=104,
                       noise="lognormal", metric=sim.GAIN)
    r, lo, hi, k = sim.rate(out)
    print(f"\nlognormal maximize rho=0, skew_max={settings.skew_max}: {k}/{n} = {r:.4f} [{lo:.4f}, {hi:.4f}]")
    return k


def test_maximized_lognormal_metric_stays_clearly_under_alpha() -> None:
    # The cell that sat at α with accepts from 3 runs alone (0.99% [0.86, 1.14] over 20,000): a mean of 3–8
    # runs compared with the incumbent's mean of many has the runs' long right tail. With the skew check
    # (`skew_max`) the comparison falls back to the paired difference, which is symmetric under a useless
    # change; bench/judge.py --skew measures 0.53% [0.43, 0.64] over 20,000. Failing needs a rate shown
    # above 0.6% (about 0.85% observed of 6,000), which the judge without the check (0.99%) does most of
    # the time.
    assert not_above(lognormal_gain_rate(JudgeSettings(), 6000), 6000, 0.006)


@pytest.mark.slow
def test_without_the_skew_check_the_same_cell_sits_at_alpha() -> None:
    # The contrast on 10,000 of the same seeds: without the check the rate is shown above 0.6%.
    assert not not_above(lognormal_gain_rate(JudgeSettings(skew_max=math.inf), 10_000), 10_000, 0.006)


def test_single_run_accepts_broke_alpha_on_lognormal_noise() -> None:
    # The behaviour before (accepts from the first run): a maximized lognormal metric passed 3.4% of
    # useless changes at α = 1% (the CLI: 2.5%). The simulation has the power to see it.
    r, lo, hi, k = null_rate(JudgeSettings(accept_from=1, skew_max=math.inf), "lognormal", sim.GAIN, 0.0, 101)
    print(f"\nlognormal maximize rho=0, accept_from=1: {k}/{N} = {r:.4f} [{lo:.4f}, {hi:.4f}]")
    assert lo > 2 * ALPHA


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_normal_noise_runs_per_hypothesis_stay_within_target(rho: float) -> None:
    out = sim.simulate(make_judge(JudgeSettings()), effects=[(0.9, 0.0), (0.05, 1.0), (0.05, 2.0)],
                       hypotheses=4000, rho=rho, alpha=ALPHA, seed=103)
    m, lo, hi = sim.mean_ci([o.candidate_runs for o in out])
    print(f"\n90% null, normal noise, rho={rho}: candidate runs {m:.3f} [{lo:.3f}, {hi:.3f}]")
    se = (hi - lo) / (2 * sps.t.isf(0.025, len(out) - 1))
    assert (m - 1.5) / se < sps.norm.isf(0.01)  # not shown above 1.5 at the 1% level


def test_no_run_level_accept_before_accept_from() -> None:
    loss = MetricSpec(name="loss", direction="minimize")
    hist = tuple((0.01 * (i % 3 - 1), 0.01 * (i % 5 - 2), 0.0) for i in range(20))
    judge = make_judge(JudgeSettings())
    for n, want in ((1, "more"), (2, "more"), (3, "accept")):
        pairs = tuple((0.0, 1.0) for _ in range(n))  # an enormous improvement
        r = judge.judge(Evidence(metric=loss, design="independent", pairs=pairs, history_diffs=hist), ALPHA)
        assert r.decision == want, (n, r.reason)
        assert r.alpha_spent == pytest.approx(0.0 if n < 3 else ALPHA * 3 / 8)
    # A bad first run is still dropped at look 1 (futility), so useless changes still cost about one run.
    r = judge.judge(Evidence(metric=loss, design="independent", pairs=((1.3, 1.0),), history_diffs=hist), ALPHA)
    assert r.decision == "reject" and r.look == 1


def test_robust_modes_with_fewer_than_three_values_are_the_plain_test() -> None:
    # One or two differences are not trimmed; their variance must not be the trimmed (smaller) scale's.
    heavy = tuple(tuple(float(x) for x in sps.t.rvs(3, size=10, random_state=i)) for i in range(6))
    pairs = ((1.5, 0.0), (1.2, 0.0))
    plain = stats.paired_test(pairs, "maximize", 0.0, heavy)
    for robust in ("trim", "winsor"):
        r = stats.paired_test(pairs, "maximize", 0.0, heavy, robust=robust)  # type: ignore[arg-type]
        assert r.p_value == pytest.approx(plain.p_value) and r.se == pytest.approx(plain.se)
        two = stats.two_sample_test((1.5,), (0.0, 0.1, -0.2, 0.3), "maximize", 0.0, heavy,
                                    robust=robust)  # type: ignore[arg-type]
        assert two.p_value == pytest.approx(
            stats.two_sample_test((1.5,), (0.0, 0.1, -0.2, 0.3), "maximize", 0.0, heavy).p_value)
        assert math.isfinite(two.se or math.nan)


def test_pooled_skewness_is_scipys_for_one_group_and_ignores_group_means() -> None:
    rng = np.random.default_rng(5)
    x = np.exp(rng.standard_normal(12))
    gamma, se, weight = stats.pooled_skewness([x])
    assert gamma == pytest.approx(float(sps.skew(x, bias=False)), rel=1e-12)
    assert weight == pytest.approx(11 * 10 / 12)
    assert se == pytest.approx(math.sqrt(6 * 12 * 11 / (10 * 13 * 15)))  # G1's exact SE under normality
    groups = [np.exp(rng.standard_normal(n)) for n in (7, 9, 2, 1)]
    shifted = [g + 100.0 * i for i, g in enumerate(groups)]
    assert stats.pooled_skewness(shifted)[0] == pytest.approx(stats.pooled_skewness(groups)[0], rel=1e-9)
    gamma, se, _ = stats.pooled_skewness([x[:2], x[2:3]])  # groups of ≤ 2 carry no skewness
    assert math.isnan(gamma) and se == math.inf


@pytest.mark.parametrize("sizes", [[5], [20], [3] * 10, [16, 3, 3, 4, 2]])
def test_pooled_skewness_standard_error_is_right_on_normal_noise(sizes: list[int]) -> None:
    # The stated SE against the spread of 4,000 draws: their SD is within 6% of it (the SD of 4,000 draws
    # of a near-normal statistic is itself known to about 1.1%, so 6% leaves room for the statistic's
    # kurtosis at small n), and P(G1 > 1.645 SE) is not shown off 5% at the 1% level.
    rng = np.random.default_rng(sum(sizes))
    draws = [stats.pooled_skewness([rng.standard_normal(n) for n in sizes]) for _ in range(4000)]
    g, se = np.array([d[0] for d in draws]), draws[0][1]
    print(f"\nsizes {sizes}: SD of the skewness {g.std():.3f}, stated SE {se:.3f}")
    assert abs(g.std() / se - 1.0) < 0.06
    assert sps.binomtest(int(np.sum(g > 1.645 * se)), len(g), 0.05).pvalue > 0.01


def test_skew_check_is_one_sided_and_needs_replicates() -> None:
    rng = np.random.default_rng(6)
    right = [(0.0,) * 9 + (10.0,), (1.0,) * 9 + (12.0,)]  # one long right tail per group
    normal = [tuple(rng.standard_normal(40))]
    assert not stats.skew_below(+1.0, right, 1.0)  # maximize: the tail is on the side of improvement
    assert stats.skew_below(-1.0, right, 1.0)  # minimize (latency): it makes the comparison conservative
    assert stats.skew_below(+1.0, normal, 1.0) and stats.skew_below(-1.0, normal, 1.0)
    assert not stats.skew_below(+1.0, [normal[0][:2], normal[0][2:4]], 1.0)  # no group of 3: unknown
    assert stats.skew_below(+1.0, right, math.inf)


def test_skew_check_passes_normal_runs_and_stops_lognormal_ones() -> None:
    # Its cost on normal noise: an incumbent with 20 replicates fails it (and the judge falls back to the
    # paired test) when G1 > 1, about 3% (G1's SE there is 0.51); shown not above 5%. Lognormal runs
    # (σ_log = 1) fail it from 16 replicates most of the time although G1 falls far short of 6.2.
    rng = np.random.default_rng(7)
    fails = sum(not stats.skew_below(+1.0, [tuple(rng.standard_normal(20))], 1.0) for _ in range(4000))
    stopped = sum(not stats.skew_below(+1.0, [tuple(np.exp(rng.standard_normal(16)))], 1.0) for _ in range(4000))
    print(f"\nskew check fails normal (20 runs) {fails}/4000, lognormal (16 runs) {stopped}/4000")
    assert not_above(fails, 4000, 0.05) and fails > 0
    assert sps.binomtest(stopped, 4000, 0.7, alternative="less").pvalue > 0.01


def test_judge_compares_with_the_incumbent_mean_only_when_runs_are_not_skewed() -> None:
    rng = np.random.default_rng(8)
    gain = MetricSpec(name="gain", direction="maximize")
    pairs = tuple((float(c), float(i)) for c, i in rng.standard_normal((3, 2)))
    for history, paired in (((tuple(rng.standard_normal(30)),), False),
                            ((tuple(np.exp(2.0 * rng.standard_normal(30))),), True)):
        ev = Evidence(metric=gain, design="independent", pairs=pairs, incumbent_only=tuple(rng.standard_normal(12)),
                      history_replicates=history)
        r = make_judge(JudgeSettings()).judge(ev, ALPHA)
        assert r.test.startswith("paired") == paired, r.test
        unchecked = make_judge(JudgeSettings(skew_max=math.inf)).judge(ev, ALPHA)
        assert unchecked.test.startswith("mean vs incumbent mean"), unchecked.test

