"""Unit tests of core/stats.py against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

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


def test_trimmed_paired_is_tukey_mclaughlin() -> None:
    d = np.array([0.3, 0.1, 0.4, 0.2, 0.5, 9.0, 0.25, 0.35, -5.0, 0.3])
    r = stats.paired_test([(x, 0.0) for x in d], "maximize", robust="trim", trim=0.2)
    g = 2
    w = np.clip(d, np.sort(d)[g], np.sort(d)[-g - 1])
    se = np.std(w, ddof=1) / ((1 - 0.4) * math.sqrt(10))
    assert r.effect == pytest.approx(sps.trim_mean(d, 0.2))
    assert r.statistic == pytest.approx(r.effect / se) and r.df == 10 - 2 * g - 1


def test_two_proportion_z_pooled_and_margin_by_hand() -> None:
    r = stats.proportion_test(130, 1000, 100, 1000, "maximize")
    p0 = 230 / 2000
    z = 0.03 / math.sqrt(p0 * (1 - p0) * 2 / 1000)
    assert r.test == "two-proportion z" and r.statistic == pytest.approx(z)
    assert r.p_value == pytest.approx(sps.norm.sf(z))
    m = stats.proportion_test(130, 1000, 100, 1000, "maximize", delta=0.01)
    se = math.sqrt(0.13 * 0.87 / 1000 + 0.1 * 0.9 / 1000)
    assert m.test == "two-proportion z (margin)" and m.statistic == pytest.approx(0.02 / se)
    # A minimized rate (errors): improvement = incumbent − candidate.
    e = stats.proportion_test(100, 1000, 130, 1000, "minimize")
    assert e.statistic == pytest.approx(z) and e.effect == pytest.approx(0.03)


def test_small_counts_use_fisher_exact() -> None:
    r = stats.proportion_test(6, 20, 1, 20, "maximize")
    _, p = sps.fisher_exact([[6, 14], [1, 19]], alternative="greater")
    assert r.test == "fisher exact" and r.p_value == pytest.approx(p)


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
