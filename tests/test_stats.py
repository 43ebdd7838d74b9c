"""Unit tests of core/stats.py against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.optimize import brentq

from ledgerlab.core import stats


def test_paired_t_without_history_is_scipys_ttest_rel() -> None:
    cand = [1.0, 2.5, 1.8, 3.1, 2.2]
    inc = [1.4, 2.4, 2.6, 3.5, 2.9]
    r = stats.paired_test(list(zip(cand, inc)), "minimize")
    ref = sps.ttest_rel(inc, cand, alternative="greater")  # improvement = incumbent − candidate
    assert r.statistic == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue)
    assert r.df == 4 and r.test == "paired-t"
    assert r.effect == pytest.approx(np.mean(inc) - np.mean(cand))


def test_paired_t_with_margin_by_hand() -> None:
    d = np.array([0.5, 0.7, 0.2, 0.6])  # maximize: candidate − incumbent
    pairs = [(1.0 + x, 1.0) for x in d]
    r = stats.paired_test(pairs, "maximize", delta=0.1)
    t = (d.mean() - 0.1) / (d.std(ddof=1) / 2.0)
    assert r.statistic == pytest.approx(t)
    assert r.p_value == pytest.approx(sps.t.sf(t, 3))


def test_pooled_variance_by_hand() -> None:
    own = [1.0]  # one pair: no df of its own
    hist = [(1.0, 3.0), (0.0, 1.0, 2.0)]  # variances 2 (1 df) and 1 (2 df)
    var, df = stats.pooled_variance(own, hist, min_diff_df=0)
    assert (var, df) == (pytest.approx((2 * 1 + 1 * 2) / 3), 3)
    # Few diff df: incumbent replicates join as 2σ² (conservative for ρ ≥ 0).
    var, df = stats.pooled_variance(own, hist, [(0.0, 2.0)], min_diff_df=20)
    assert (var, df) == (pytest.approx((2 + 2 + 2 * 2) / 4), 4)


def test_one_run_with_history_gives_t_on_pooled_df() -> None:
    hist = [(0.1, -0.3, 0.4), (0.2, -0.2)]
    var, df = stats.pooled_variance([], hist, min_diff_df=0)
    r = stats.paired_test([(0.0, 1.0)], "minimize", history_diffs=hist, min_diff_df=0)
    assert r.df == df == 3 and r.test == "paired-t (pooled var)"
    assert r.statistic == pytest.approx(1.0 / math.sqrt(var))


def test_no_history_one_run_has_no_test() -> None:
    r = stats.paired_test([(0.0, 1.0)], "minimize")
    assert r.p_value is None and r.effect == 1.0


def test_welch_matches_scipy_and_margin_shift() -> None:
    a, b = [3.1, 2.9, 3.4, 3.0], [2.5, 2.7, 2.2, 2.9, 2.6]
    r = stats.two_sample_test(a, b, "maximize", delta=0.1)
    ref = sps.ttest_ind(np.array(a) - 0.1, b, equal_var=False, alternative="greater")
    assert r.test == "welch" and r.p_value == pytest.approx(ref.pvalue)
    assert r.effect == pytest.approx(np.mean(a) - np.mean(b))
    assert r.se == pytest.approx(math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 5))


def test_yuen_is_scipys_trimmed_ttest() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_t(2, 20), rng.standard_t(2, 20) + 1.0
    r = stats.two_sample_test(a, b, "minimize", robust="trim", trim=0.2)
    ref = sps.ttest_ind(a, b, equal_var=False, alternative="less", trim=0.2)
    assert r.test == "yuen" and r.p_value == pytest.approx(ref.pvalue)
    assert r.effect == pytest.approx(sps.trim_mean(b, 0.2) - sps.trim_mean(a, 0.2))


def test_winsorized_welch_reports_the_winsorized_difference_and_its_se() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 2.5, 3.5, 1.5, 2.2, 3.1])
    b = np.array([0.5, 0.4, 0.6, 0.5, -50.0, 0.45, 0.55, 0.5, 0.52, 0.48])
    wa, wb = stats._winsorize(a, 0.2), stats._winsorize(b, 0.2)
    for direction, sign in (("maximize", 1.0), ("minimize", -1.0)):
        r = stats.two_sample_test(a, b, direction, delta=0.1, robust="winsor", trim=0.2)
        se = math.sqrt(np.var(wa, ddof=1) / 10 + np.var(wb, ddof=1) / 10)
        assert r.effect == pytest.approx(sign * (wa.mean() - wb.mean())) and r.se == pytest.approx(se)
        assert r.statistic == pytest.approx((r.effect - 0.1) / se)
        alt = "greater" if sign > 0 else "less"
        ref = sps.ttest_ind(wa - sign * 0.1, wb, equal_var=False, alternative=alt)
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12) and r.df == pytest.approx(ref.df, rel=1e-12)
    r = stats.two_sample_test(a, b, "maximize", delta=0.1, robust="winsor", trim=0.2)
    assert r.se == pytest.approx(0.209, abs=1e-3)  # the raw difference with the winsorized t: 1.63
    low, _ = r.interval(1 - 2 * r.p_value)
    assert low == pytest.approx(0.1)  # the interval at the test's own p ends at δ


def test_zero_variance_is_no_test_in_every_continuous_test() -> None:
    """One rule (core/stats.py, "Zero variance"): ties to rounding mean no test, and the effect is kept."""
    tied = [0.1] * 4  # np.var of these is ~1e-34, not 0
    results = [
        stats.paired_test([(0.3, 0.1)] * 4, "maximize"),
        stats.paired_test([(0.3, 0.1)] * 4, "maximize", robust="trim"),
        stats.two_sample_test([0.3] * 4, tied, "maximize"),
        stats.two_sample_test([0.3] * 4, tied, "maximize", robust="trim"),
        stats.two_sample_test([0.3] * 4, tied, "maximize", robust="winsor"),
        stats.two_sample_test([0.3], tied, "maximize"),  # pooled-variance t
        stats.sums_test((4, 1.2, 4 * 0.09), (4, 0.4, 4 * 0.01), "maximize"),
        stats.sums_test((1, 0.3, 0.09), (4, 0.4, 4 * 0.01), "maximize"),  # one unit against ties
    ]
    for r in results:
        assert (r.statistic, r.p_value, r.se, r.df) == (None, None, None, None), r
        assert r.effect == pytest.approx(0.2), r
    # One side tied, the other not: a test, with the tied side's variance ≈ 0 (Welch's df = n − 1).
    r = stats.two_sample_test([0.3, 0.5, 0.4, 0.2], tied, "maximize")
    assert r.p_value is not None and r.df == pytest.approx(3.0)
    assert math.isnan(stats.sums_test((0, 0.0, 0.0), (4, 0.4, 0.04), "maximize").effect)  # no units
    assert math.isnan(stats.two_sample_test([], [0.1, 0.2], "maximize").effect)


def test_trimmed_paired_is_tukey_mclaughlin() -> None:
    d = np.array([0.3, 0.1, 0.4, 0.2, 0.5, 9.0, 0.25, 0.35, -5.0, 0.3])
    r = stats.paired_test([(x, 0.0) for x in d], "maximize", robust="trim", trim=0.2)
    g = 2
    w = np.clip(d, np.sort(d)[g], np.sort(d)[-g - 1])
    se = np.std(w, ddof=1) / ((1 - 0.4) * math.sqrt(10))
    assert r.effect == pytest.approx(sps.trim_mean(d, 0.2))
    assert r.statistic == pytest.approx(r.effect / se) and r.df == 10 - 2 * g - 1


def restricted_mle(x1: int, n1: int, x2: int, n2: int, delta: float) -> tuple[float, float]:
    """The rates under p1 − p2 = δ from the score equation (or the likelihood on a bound), not the cubic."""
    def score(q2: float) -> float:  # d/dq2 of the log-likelihood with q1 = q2 + δ
        q1 = q2 + delta
        return x1 / q1 - (n1 - x1) / (1 - q1) + x2 / q2 - (n2 - x2) / (1 - q2)

    lo, hi = max(0.0, -delta) + 1e-13, min(1.0, 1.0 - delta) - 1e-13
    if score(lo) > 0 > score(hi):
        q2 = brentq(score, lo, hi, xtol=1e-16, rtol=1e-15)
    else:  # on a bound
        def nll(q: float) -> float:
            return -float(sps.binom.logpmf(x1, n1, q + delta) + sps.binom.logpmf(x2, n2, q))
        q2 = min((lo - 1e-13, hi + 1e-13), key=nll)
    return q2 + delta, q2


def test_two_proportion_z_pooled_and_margin_by_hand() -> None:
    r = stats.proportion_test(130, 1000, 100, 1000, "maximize")
    p0 = 230 / 2000
    z = 0.03 / math.sqrt(p0 * (1 - p0) * 2 / 1000)
    assert r.test == "two-proportion z" and r.statistic == pytest.approx(z, rel=1e-12)  # equal arms: no skew
    assert r.p_value == pytest.approx(sps.norm.sf(z), rel=1e-12)
    # The margin test: Farrington–Manning's t at the restricted rates, then the skewness correction.
    m = stats.proportion_test(130, 1000, 100, 1000, "maximize", delta=0.01)
    q1, q2 = restricted_mle(130, 1000, 100, 1000, 0.01)
    var = q1 * (1 - q1) / 1000 + q2 * (1 - q2) / 1000
    t = 0.02 / math.sqrt(var)
    a = (q1 * (1 - q1) * (1 - 2 * q1) - q2 * (1 - q2) * (1 - 2 * q2)) / 1000**2 / (6 * var**1.5)
    zc = (-1 + math.sqrt(1 + 4 * a * (t + a))) / (2 * a)  # t = z + a(z² − 1)
    assert m.test == "two-proportion z (score, margin)" and m.statistic == pytest.approx(zc, rel=1e-11)
    assert m.p_value == pytest.approx(sps.norm.sf(zc), rel=1e-11) and m.effect == pytest.approx(0.03)
    # A minimized rate (errors): improvement = incumbent − candidate, the same test with the arms swapped.
    e = stats.proportion_test(100, 1000, 130, 1000, "minimize")
    assert e.statistic == pytest.approx(z) and e.effect == pytest.approx(0.03)
    em = stats.proportion_test(100, 1000, 130, 1000, "minimize", delta=0.01)
    assert em.p_value == m.p_value and em.interval(0.9) == m.interval(0.9)


def test_a_zero_count_arm_no_longer_fakes_significance() -> None:
    # The case: 0/100 candidate errors vs 1/1000, non-inferiority margin 0.002. Wald: p = 0.0013.
    r = stats.proportion_test(0, 100, 1, 1000, "minimize", delta=-0.002)
    fm = float(stats._score_z(1, 1000, 0, 100, -0.002, skew=False)[0])
    assert sps.norm.sf(fm) == pytest.approx(0.2917, abs=1e-4)  # the 0.29
    assert r.p_value == pytest.approx(0.390, abs=1e-3)  # skewness-corrected; Farrington–Manning's t: 0.29
    assert r.effect == pytest.approx(0.001) and r.interval(0.98)[0] < -0.002


def test_proportion_edge_cases() -> None:
    no_trials = stats.proportion_test(0, 0, 3, 20, "maximize"), stats.proportion_test(3, 20, 0, 0, "minimize", 0.1)
    for r in no_trials:
        assert r.p_value is None and r.statistic is None and math.isnan(r.effect)  # no trials: no evidence
        assert r.interval(0.95) == (None, None)
    for kw in ({"min_expected": 0.0}, {}):  # score z and Fisher's test agree: nothing favours either arm
        for counts in ((0, 50, 0, 80), (50, 50, 80, 80)):
            r = stats.proportion_test(*counts, "maximize", **kw)
            assert r.p_value == 1.0 and r.effect == 0.0
            low, high = r.interval(0.95)
            assert low is not None and high is not None and low < 0 < high
    assert stats.proportion_test(0, 50, 0, 80, "maximize", 0.01).p_value > 0.5  # a margin: defined, large
    with pytest.raises(ValueError):
        stats.proportion_test(5, 4, 1, 10, "maximize")
    with pytest.raises(ValueError):
        stats.proportion_test(1, 4, 1, 10, "maximize", delta=1.0)


def test_small_counts_use_fisher_exact() -> None:
    r = stats.proportion_test(6, 20, 1, 20, "maximize")
    _, p = sps.fisher_exact([[6, 14], [1, 19]], alternative="greater")
    assert r.test == "fisher exact" and r.p_value == pytest.approx(p)
    m = stats.proportion_test(1, 20, 6, 20, "minimize")
    assert m.test == "fisher exact" and m.p_value == pytest.approx(p)


# Tables for the interval's agreement with the test: balanced and unequal arms, low rates, and arms with no
# or only successes (where the score p-value needs `_score_p`'s hold to stay monotone).
TABLES = [(15, 20, 10, 20), (10, 20, 15, 20), (0, 100, 1, 1000), (1, 1000, 0, 100), (3, 100, 2, 1000),
          (130, 1000, 100, 1000), (7, 34, 1, 34), (0, 20, 0, 20), (20, 20, 20, 20), (0, 1, 1, 3),
          (4, 4, 7, 9), (1, 3, 0, 1), (2, 40, 0, 35), (40, 40, 33, 35), (12, 300, 25, 3000), (0, 5, 5, 5),
          (1, 1, 1, 1)]


def test_score_p_is_monotone_in_delta() -> None:
    grid = np.linspace(-0.999, 0.999, 1601)
    for table in TABLES:
        low = [stats._score_p(*table, float(d)) for d in grid]
        high = [stats._score_p(*table, float(d), upper=True) for d in grid]
        assert np.all(np.diff(low) >= 0) and np.all(np.diff(high) <= 0), table
    # Tables with every count inside need no hold at all (the raw score p-value is monotone).
    for table in [(x1, n1, x2, n2) for n1, n2 in ((3, 5), (6, 13), (15, 40)) for x1 in range(1, n1)
                  for x2 in range(1, n2, 3)]:
        assert stats._peaks(*table) == ()
        assert np.all(np.diff([stats._raw_p(*table, float(d)) for d in grid[::4]]) >= 0), table


@pytest.mark.parametrize("table", TABLES)
def test_score_interval_agrees_with_the_test_exactly(table: tuple[int, int, int, int]) -> None:
    x1, n1, x2, n2 = table
    deltas = sorted({0.0, -0.002, 0.002, 0.05, -0.2, 0.25, round(x1 / n1 - x2 / n2, 3)} - {1.0, -1.0})
    for direction in ("maximize", "minimize"):
        counts = (x1, n1, x2, n2) if direction == "maximize" else (x2, n2, x1, n1)
        for tail in (0.001, 0.01, 0.05, 0.1, 0.3):
            low = high = None
            for delta in deltas:
                r = stats.proportion_test(*counts, direction, delta, min_expected=0.0)
                if low is None:  # the interval does not depend on δ
                    low, high = r.interval(1 - 2 * tail)
                    assert -1.0 <= low <= r.effect <= high <= 1.0
                assert (low > delta) == (r.p_value <= tail), (direction, tail, delta, low, r.p_value)
                upper = stats._score_p(x1, n1, x2, n2, delta, upper=True)
                assert (high < delta) == (upper <= tail), (direction, tail, delta, high, upper)
    # The interval's ends are where the test switches, to the last float.
    r = stats.proportion_test(x1, n1, x2, n2, "maximize", min_expected=0.0)
    low = r.interval(0.9)[0]
    if -1.0 < low < 1.0:
        below = math.nextafter(low, -2.0)
        assert stats._score_p(x1, n1, x2, n2, low) > 0.05 >= stats._score_p(x1, n1, x2, n2, below)


def test_fifteen_of_twenty_against_ten_of_twenty() -> None:
    # The Wald interval and the pooled z disagreed here: p > 0.05 with a 90% interval above 0.
    r = stats.proportion_test(15, 20, 10, 20, "maximize")
    assert r.test == "two-proportion z" and r.p_value == pytest.approx(0.0512, abs=1e-4)
    low, _ = r.interval(0.9)
    assert low < 0


def exact_size(n_better: int, n_other: int, rate: float, delta: float,
               alphas: tuple[float, ...]) -> list[float]:
    """P(reject H0: p1 − p2 ≤ δ) at its boundary p1 = rate + δ, p2 = rate, summed over every table."""
    x1 = np.arange(n_better + 1.0)[:, None]
    x2 = np.arange(n_other + 1.0)[None, :]
    z = stats._score_z(x1, n_better, x2, n_other, delta)[0]
    p = np.where(np.isnan(z), 1.0, sps.norm.sf(z))
    w = sps.binom.pmf(x1, n_better, rate + delta) * sps.binom.pmf(x2, n_other, rate)
    return [float((w * (p <= a)).sum()) for a in alphas]


def test_margin_test_exact_size_at_low_rates() -> None:
    """n = 100 against 1000 at rates 0.1–1%: the arm that must be better may be either.

    Measured (docs/judge.md): at most 5.9% at nominal 5% and 1.55% at 1%, both at the lowest rate with
    the 100-arm the better one (0.3 expected successes: one outcome carries the overshoot); 0.3% and 0%
    the other way round. The Wald margin test this replaced: 11.7% / 3.3% and 57.6% / 57.6%; the
    uncorrected score test: 11.8% / 3.0%. The bounds below are those maxima, rounded up. The rejections
    are `_score_z`'s: `_score_p` raises p only above 0.17, so at these levels they are the test's.
    """
    sizes = {(nb, no): [exact_size(nb, no, rate, delta, (0.05, 0.01)) for rate in (0.001, 0.002, 0.005, 0.01)
                        for delta in (-0.005, -0.002, 0.002, 0.005, 0.01) if rate + delta >= 0]
             for nb, no in ((100, 1000), (1000, 100))}
    small_better, large_better = np.array(sizes[100, 1000]), np.array(sizes[1000, 100])
    assert small_better.max(0) == pytest.approx([0.059, 0.0155], abs=5e-4)
    assert np.all(small_better.max(0) <= [0.06, 0.016]) and np.all(large_better.max(0) <= [0.005, 0.001])
    assert np.all(small_better.mean(0) <= [0.05, 0.01])  # on average over the settings, at most nominal


def test_sequential_levels_spend_alpha_exactly_without_futility() -> None:
    levels = stats.sequential_levels(0.01, (1, 3, 6), None)
    assert levels[0] == pytest.approx(0.01 / 6)
    rng = np.random.default_rng(1)
    n, looks = 400_000, (1, 3, 6)
    s = np.cumsum(rng.standard_normal((n, 3)) * np.sqrt([1, 2, 3]), axis=1) / np.sqrt(looks)
    crossed = (s >= sps.norm.isf(levels)).any(axis=1).mean()
    assert crossed == pytest.approx(0.01, abs=0.0008)  # Monte Carlo SE ≈ 0.00016


def test_binding_futility_raises_later_levels_but_never_above_alpha() -> None:
    plain = stats.sequential_levels(0.01, (1, 3, 6), None)
    fut = stats.sequential_levels(0.01, (1, 3, 6), 0.2)
    assert fut[0] == pytest.approx(plain[0])
    assert all(f >= p for f, p in zip(fut, plain)) and max(fut) <= 0.01 + 1e-12
