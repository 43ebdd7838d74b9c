"""core/stats.py against independent implementations: statsmodels' score test for two proportions, scipy's
t-tests, and the restricted likelihood maximized numerically. Fixed inputs; agreement to about 1e-10.

statsmodels (a dev dependency) is the reference for Farrington–Manning's statistic. Its restricted rates
are wrong for δ ≠ 0 (statsmodels#10269: `count0` where `nobs0` belongs in the cubic's linear
coefficient), except when the second arm has only successes, where the two coincide; other tables are
compared there by swapping successes and failures, and the rates themselves against the score equation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.optimize import brentq

from ledgerlab.core import stats

smp = pytest.importorskip("statsmodels.stats.proportion")
# statsmodels also computes ratios and odds ratios, which divide by zero on tables with an empty arm.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                                        "ignore:invalid value:RuntimeWarning")

# (x1, n1, x2, n2): balanced and unequal arms, low and middling rates.
TABLES = [(130, 1000, 100, 1000), (15, 20, 10, 20), (7, 34, 1, 34), (3, 100, 12, 1000), (12, 1000, 3, 100),
          (48, 2500, 61, 2400), (1, 50, 9, 400), (33, 60, 20, 70), (2, 30, 0, 45), (5, 200, 0, 1000)]


def fm_t(x1: int, n1: int, x2: int, n2: int, delta: float) -> float:
    return float(stats._score_z(x1, n1, x2, n2, delta, skew=False)[0])


def sm_t(x1: int, n1: int, x2: int, n2: int, delta: float) -> float:
    r = smp.test_proportions_2indep(x1, n1, x2, n2, value=delta, method="score", compare="diff",
                                    alternative="larger", correction=False)
    return float(r.statistic)


@pytest.mark.parametrize("table", TABLES)
def test_farrington_manning_at_no_margin_is_statsmodels_score_test(table: tuple[int, int, int, int]) -> None:
    assert fm_t(*table, 0.0) == pytest.approx(sm_t(*table, 0.0), rel=1e-12)
    x1, n1, x2, n2 = table
    if n1 == n2:  # equal arms: no skew at δ = 0, so the corrected statistic is the classical pooled z too
        assert stats.proportion_test(x1, n1, x2, n2, "maximize", min_expected=0).statistic == pytest.approx(
            sm_t(*table, 0.0), rel=1e-12)


@pytest.mark.parametrize("delta", [-0.02, -0.002, 0.001, 0.005, 0.05])
@pytest.mark.parametrize("x1, n1, n2", [(3, 100, 1000), (0, 100, 1000), (12, 1000, 100), (7, 34, 34),
                                        (40, 90, 60)])
def test_farrington_manning_with_a_margin_is_statsmodels_where_its_cubic_is_right(
        x1: int, n1: int, n2: int, delta: float) -> None:
    # x2 = n2: statsmodels' `count0` is `nobs0`, so its cubic is the right one. (Where the rate sits on a
    # bound, its closed form meets a near-double root and keeps ~10 digits; ours sets the bound exactly.)
    assert fm_t(x1, n1, n2, n2, delta) == pytest.approx(sm_t(x1, n1, n2, n2, delta), rel=1e-9, abs=1e-12)
    # x2 = 0, the low-rate case: swap successes and failures, which turns it into the case above.
    swapped = -sm_t(n1 - x1, n1, n2, n2, -delta)
    assert fm_t(x1, n1, 0, n2, delta) == pytest.approx(swapped, rel=1e-9, abs=1e-12)


def score_root(x1: int, n1: int, x2: int, n2: int, delta: float) -> float | None:
    """q2 where the restricted log-likelihood's derivative is 0 (None when the maximum is on a bound)."""
    def score(q2: float) -> float:
        q1 = q2 + delta
        return x1 / q1 - (n1 - x1) / (1 - q1) + x2 / q2 - (n2 - x2) / (1 - q2)

    lo, hi = max(0.0, -delta) + 1e-12, min(1.0, 1.0 - delta) - 1e-12
    return brentq(score, lo, hi, xtol=1e-16, rtol=1e-15) if score(lo) > 0 > score(hi) else None


@pytest.mark.parametrize("table", TABLES)
def test_restricted_rates_solve_the_score_equation(table: tuple[int, int, int, int]) -> None:
    x1, n1, x2, n2 = table
    for delta in (-0.3, -0.02, -0.002, 0.001, 0.004, 0.03, 0.25):
        q1, q2 = stats._restricted_rates(*(float(v) for v in table), delta, stats._Scalar)
        assert q1 - q2 == pytest.approx(delta, abs=1e-15)
        root = score_root(x1, n1, x2, n2, delta)
        if root is not None:
            assert q2 == pytest.approx(root, rel=1e-9, abs=1e-13)
        else:  # on a bound: the better end of the feasible segment
            def ll(q: float) -> float:
                return float(sps.binom.logpmf(x1, n1, q + delta) + sps.binom.logpmf(x2, n2, q))
            ends = (max(0.0, -delta), min(1.0, 1.0 - delta))
            assert q2 == pytest.approx(max(ends, key=ll), abs=1e-13)
        # The vectorized form (the size enumeration's) is the same computation.
        z_vec = stats._score_z(np.array([x1]), n1, np.array([x2]), n2, delta)[0][0]
        assert z_vec == pytest.approx(stats._score_z(*table, delta)[0], rel=1e-11, abs=1e-12)


def test_statsmodels_margin_score_test_once_its_cubic_is_fixed() -> None:
    """Where statsmodels' rates do not zero the score equation (statsmodels#10269), ours have the higher
    restricted likelihood; once they do, the statistics must agree."""
    for x1, n1, x2, n2 in TABLES:
        for delta in (-0.02, 0.004, 0.03):
            r = smp.test_proportions_2indep(x1, n1, x2, n2, value=delta, method="score", compare="diff",
                                            alternative="larger", correction=False)
            root = score_root(x1, n1, x2, n2, delta)
            if root is None:
                continue
            if r.prop2_null == pytest.approx(root, rel=1e-9):
                assert fm_t(x1, n1, x2, n2, delta) == pytest.approx(float(r.statistic), rel=1e-9)
            else:
                ours = stats._restricted_rates(float(x1), n1, float(x2), n2, delta, stats._Scalar)

                def ll(q1: float, q2: float) -> float:
                    return float(sps.binom.logpmf(x1, n1, q1) + sps.binom.logpmf(x2, n2, q2))
                assert ll(*ours) > ll(r.prop1_null, r.prop2_null)


# ------------------------------------------------------------------------------------ t-tests vs scipy

A = np.array([3.1, 2.9, 3.4, 3.0, 2.6, 9.5, 3.3, 2.8, 3.2, 3.05])
B = np.array([2.5, 2.7, 2.2, 2.9, 2.6, 2.4, -4.0, 2.65])


@pytest.mark.parametrize("robust", ["none", "trim", "winsor"])
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_welch_yuen_and_winsorized_welch_are_scipys(robust: str, direction: str) -> None:
    sign = 1.0 if direction == "maximize" else -1.0
    r = stats.two_sample_test(A, B, direction, delta=0.1, robust=robust, trim=0.2)
    a, b = (stats._winsorize(A, 0.2), stats._winsorize(B, 0.2)) if robust == "winsor" else (A, B)
    ref = sps.ttest_ind(a - sign * 0.1, b, equal_var=False, alternative="greater" if sign > 0 else "less",
                        trim=0.2 if robust == "trim" else 0.0)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.statistic == pytest.approx(sign * ref.statistic, rel=1e-12)
    assert r.df == pytest.approx(ref.df, rel=1e-12)
    assert r.statistic == pytest.approx((r.effect - 0.1) / r.se, rel=1e-12)  # effect and se are the test's
    loc = {"none": np.mean, "winsor": np.mean, "trim": lambda x: sps.trim_mean(x, 0.2)}[robust]
    assert r.effect == pytest.approx(sign * (loc(a) - loc(b)), rel=1e-12)


def test_paired_pooled_and_sums_tests_are_scipys() -> None:
    r = stats.paired_test(list(zip(A[:8], B)), "minimize", delta=-0.2)
    ref = sps.ttest_rel(B + 0.2, A[:8], alternative="greater")
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    one = stats.two_sample_test(A[:1], B, "maximize", delta=0.1)  # one run: Student's pooled t
    ref = sps.ttest_ind(A[:1] - 0.1, B, equal_var=True, alternative="greater")
    assert one.p_value == pytest.approx(ref.pvalue, rel=1e-12) and one.df == len(B) - 1
    sums = [(len(x), x.sum(), (x**2).sum()) for x in (A, B)]
    s = stats.sums_test(*sums, "minimize", delta=0.05)
    ref = sps.ttest_ind(A + 0.05, B, equal_var=False, alternative="less")
    assert s.p_value == pytest.approx(ref.pvalue, rel=1e-9) and s.df == pytest.approx(ref.df, rel=1e-9)
    assert s.se == pytest.approx(math.sqrt(A.var(ddof=1) / len(A) + B.var(ddof=1) / len(B)), rel=1e-9)
