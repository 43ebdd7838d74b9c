"""core/stats.py's direct ufunc kernels give exactly what numpy's and scipy's wrappers give."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ledgerlab.core import stats


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 17, 40])
def test_mean_and_variance_are_numpys_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    for x in (rng.normal(3.2, 0.01, n), rng.lognormal(0, 2, n), np.full(n, 0.1), np.round(rng.normal(0, 1, n), 2)):
        assert repr(stats._mean(x)) == repr(float(np.mean(x)))
        if n > 1:
            assert repr(stats._var(x)) == repr(float(np.var(x, ddof=1)))


def test_t_tails_are_scipys_bit_for_bit() -> None:
    for df in (0.5, 1, 2, 3.7, 10, 1e6, math.inf, 0, -1, math.nan):
        for t in (-5.0, -0.3, 0.0, 0.7, 3.0, 40.0, math.inf, -math.inf, math.nan):
            assert repr(stats.t_sf(t, df)) == repr(float(sps.t.sf(t, df)))
        for q in (1e-6, 0.025, 0.05, 0.5, 0.9):
            assert repr(stats.t_isf(q, df)) == repr(float(sps.t.isf(q, df)))


def test_magnitude_is_numpys_including_nan() -> None:
    for values in ([1.0, -4.0, 2.0], [-0.0], [math.inf, 1.0], [1.0, math.nan, 3.0], np.array([0.5, -0.25])):
        assert repr(stats._magnitude(values)) == repr(float(np.max(np.abs(values))))
