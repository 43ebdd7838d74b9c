"""One-sided tests of "the candidate improves on the incumbent by more than δ", on scipy.

Every test here returns a `TestResult` for the *improvement* (positive = better, in metric units) against
H0: improvement ≤ δ. The sequential policy and the wording live in `core/judge.py`; this module is only
statistics.

Variance from the campaign's history (why a single run can be judged at all)
-------------------------------------------------------------------------
With one or two replicates a t-test has no (or one) degree of freedom and is powerless. But seed noise is a
property of the experiment, not of the change: every hypothesis of a campaign sees about the same spread.
So the judge pools variance across the campaign:

* `history_diffs`: earlier hypotheses' paired differences. Each group's sample variance estimates Var(d)
  with n−1 df; the group's own mean effect cancels inside it, so groups with different true effects pool
  fine (classical pooled within-group variance, df = Σ(n_g − 1)). These groups reach the loop only when a
  hypothesis went past its first look, i.e. its first difference was selected to look good; that selection
  *inflates* the within-group variance, so the bias is conservative.
* `history_replicates`: groups of replicate values of one candidate (the incumbent's runs on different
  seeds). They estimate the single-run variance σ². For a paired difference Var(d) = 2σ²(1 − ρ) ≤ 2σ²
  whenever the pairing correlation ρ ≥ 0, so 2σ² is a conservative stand-in. It is used only while the
  difference-based pool has fewer than `min_diff_df` df (it overstates the noise once ρ > 0).
* the current hypothesis's own differences (n − 1 df) always join the pool.

The statistic is (mean − δ) / (s_pooled / √n) referred to a t distribution with the pooled df. This is
the paired t-test with a better variance estimate; with no history it is exactly scipy's `ttest_rel`.
Assumption (stated, not tested here): the paired-difference variance is about the same for all changes of
a campaign. A change that makes runs erratic still contributes its own larger variance.

Heavy tails (`robust`): "trim" uses the Tukey–McLaughlin trimmed mean of the differences with the
winsorized variance (the one-sample form of Yuen's test; scipy's `ttest_ind(trim=)` for unpaired data);
"winsor" winsorizes the differences and runs the t-test on them. History groups are treated the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps
from scipy.optimize import brentq

Robust = Literal["none", "trim", "winsor"]


class TestResult(BaseModel):
    """One test of H0: improvement ≤ δ: statistic, one-sided p, the improvement and its standard error."""

    model_config = ConfigDict(frozen=True)
    __test__ = False  # not a pytest class

    test: str
    statistic: float | None
    p_value: float | None
    effect: float
    se: float | None
    df: float | None  # None: normal reference distribution (z-tests) or no test
    n_candidate: int
    n_incumbent: int

    def interval(self, level: float) -> tuple[float | None, float | None]:
        """Two-sided `level` interval for the improvement (None ends when no standard error exists)."""
        if self.se is None or not math.isfinite(self.se):
            return None, None
        tail = (1.0 - level) / 2.0
        q = float(sps.norm.isf(tail) if self.df is None else sps.t.isf(tail, self.df))
        return self.effect - q * self.se, self.effect + q * self.se


# ------------------------------------------------------------------------------------ robust helpers


def _winsorize(x: np.ndarray, trim: float) -> np.ndarray:
    """Clamp the g = floor(trim·n) smallest and largest values to their neighbours."""
    g = int(math.floor(trim * len(x)))
    if g == 0:
        return x
    s = np.sort(x)
    return np.clip(x, s[g], s[len(x) - g - 1])


def _location_scale(x: np.ndarray, robust: Robust, trim: float) -> tuple[float, float, int]:
    """(location, variance of one value on the location's scale, df) of one group of values.

    For "trim" the variance is s_w² / (1 − 2γ)², so that var/n is the trimmed mean's squared standard
    error (Tukey–McLaughlin) and df = n − 2g − 1; for "winsor" the t-test runs on winsorized values.
    """
    n = len(x)
    if robust == "none" or n < 3:
        return float(np.mean(x)), float(np.var(x, ddof=1)) if n > 1 else math.nan, n - 1
    w = _winsorize(x, trim)
    if robust == "winsor":
        return float(np.mean(w)), float(np.var(w, ddof=1)), n - 1
    g = int(math.floor(trim * n))
    gamma = g / n  # the trimming actually done, not the nominal
    loc = float(sps.trim_mean(x, gamma)) if g else float(np.mean(x))
    return loc, float(np.var(w, ddof=1)) / (1.0 - 2.0 * gamma) ** 2, n - 2 * g - 1


# --------------------------------------------------------------------------------- pooled variance


def pooled_variance(
    own: Sequence[float],
    history_diffs: Sequence[Sequence[float]] = (),
    history_replicates: Sequence[Sequence[float]] = (),
    *,
    min_diff_df: int = 8,
    robust: Robust = "none",
    trim: float = 0.2,
) -> tuple[float, int]:
    """Pooled variance of one paired difference and its df (nan, 0 when nothing has two values)."""
    ss, df = 0.0, 0
    for group in [*history_diffs, own]:
        if len(group) >= 2:
            _, v, d = _location_scale(np.asarray(group, float), robust, trim)
            if d > 0:
                ss, df = ss + v * d, df + d
    if df < min_diff_df:
        # Var(d) = 2σ²(1 − ρ) ≤ 2σ² for ρ ≥ 0: single-run replicates give a conservative stand-in.
        for group in history_replicates:
            if len(group) >= 2:
                _, v, d = _location_scale(np.asarray(group, float), robust, trim)
                if d > 0:
                    ss, df = ss + 2.0 * v * d, df + d
    return (ss / df, df) if df > 0 else (math.nan, 0)


def pooled_single_variance(
    groups: Sequence[Sequence[float]], robust: Robust = "none", trim: float = 0.2
) -> tuple[float, int]:
    """Pooled within-group variance of single runs and its df (nan, 0 when nothing has two values)."""
    ss, df = 0.0, 0
    for group in groups:
        if len(group) >= 2:
            _, v, d = _location_scale(np.asarray(group, float), robust, trim)
            if d > 0:
                ss, df = ss + v * d, df + d
    return (ss / df, df) if df > 0 else (math.nan, 0)


# ------------------------------------------------------------------------- group-sequential levels


@lru_cache(maxsize=256)
def sequential_levels(
    alpha: float, looks: tuple[int, ...], futility_p: float | tuple[float, ...] | None,
    spending: str = "information", grid: int = 801,
) -> tuple[float, ...]:
    """Per-look one-sided p-value levels whose first-crossing probabilities spend `alpha` exactly.

    Normal theory: the standardized statistics Z_k at n_k replicates are jointly normal with
    Corr(Z_j, Z_k) = √(n_j / n_k). Look k is reached only if every earlier look continued (not accepted,
    and, with binding futility, p ≤ futility_p). Each boundary c_k is solved so that
    P(reach k and Z_k ≥ c_k) = α_k, the spend at look k ("information": α·(n_k − n_{k−1})/n_K, a linear
    spending function; "equal": α/K). The score process S_k = √n_k·Z_k has independent increments, so the
    density of S over the continuation region is carried from look to look on a grid (Armitage, McPherson &
    Rowe 1969). A level never exceeds α: no look is more lenient than a single test at α (spend that the
    futility bound makes unreachable is simply left unused, which only lowers type I error).
    `futility_p` is one p-value bound for every look, or one per look (the last one's is not used).
    """
    steps = [b - a for a, b in zip((0, *looks), looks)]
    spend = [alpha / len(looks)] * len(looks) if spending == "equal" else [alpha * s / looks[-1] for s in steps]
    if futility_p is None:
        bounds = [-math.inf] * len(looks)
    else:
        per_look = futility_p if isinstance(futility_p, tuple) else (futility_p,) * len(looks)
        bounds = [float(sps.norm.isf(p)) for p in per_look]
    z_floor = float(sps.norm.isf(alpha))
    levels: list[float] = []
    s_grid: np.ndarray | None = None  # grid of S over the continuation region after the previous look
    dens: np.ndarray | None = None  # its (sub-)density: mass = P(continue through all looks so far)
    for k, (n, step) in enumerate(zip(looks, steps)):
        sd = math.sqrt(step)
        if dens is None:
            def tail(c: float) -> float:
                return float(sps.norm.sf(c))
        else:
            def tail(c: float, g=s_grid, d=dens) -> float:
                return float(np.trapezoid(d * sps.norm.sf((c * math.sqrt(n) - g) / sd), g))
        reach = tail(-12.0)
        if reach <= spend[k]:
            c = z_floor
        else:
            c = max(z_floor, float(brentq(lambda x: tail(x) - spend[k], -12.0, 40.0, xtol=1e-10)))
        levels.append(float(sps.norm.sf(c)))
        if k == len(looks) - 1:
            break
        lo = max(bounds[k], -10.0) * math.sqrt(n)
        new_grid = np.linspace(lo, c * math.sqrt(n), grid)
        if dens is None:
            new_dens = sps.norm.pdf(new_grid / sd) / sd
        else:
            kernel = sps.norm.pdf((new_grid[:, None] - s_grid[None, :]) / sd) / sd
            new_dens = np.trapezoid(kernel * dens[None, :], s_grid, axis=1)
        s_grid, dens = new_grid, new_dens
    return tuple(levels)


@lru_cache(maxsize=256)
def futility_levels(futility_p: float, looks: tuple[int, ...], scale: str = "effect") -> tuple[float, ...]:
    """The p-value above which each look drops a hypothesis.

    "p": `futility_p` at every look. "effect": `futility_p` at the first look, and after it the same bound
    on the *effect* (in standard errors of the first look), so the z bound grows as √(n_k / n_1). A null
    change that survived one check is likely to survive a second at the same p (its statistics are
    correlated), and each extra look costs runs; a real change's z grows like √n and clears the rising bound.
    """
    if scale == "p":
        return tuple(futility_p for _ in looks)
    z = float(sps.norm.isf(futility_p))
    return tuple(float(sps.norm.sf(z * math.sqrt(n / looks[0]))) for n in looks)


def look_spend(alpha: float, looks: tuple[int, ...], spending: str = "information") -> tuple[float, ...]:
    """The type I error each look may spend (sums to `alpha`)."""
    if spending == "equal":
        return tuple(alpha / len(looks) for _ in looks)
    steps = [b - a for a, b in zip((0, *looks), looks)]
    return tuple(alpha * s / looks[-1] for s in steps)


# ------------------------------------------------------------------------------------ continuous


def _sign(direction: str) -> float:
    """+1 when larger is better, −1 when smaller is better."""
    return 1.0 if direction == "maximize" else -1.0


def paired_test(
    pairs: Sequence[tuple[float, float]],
    direction: str,
    delta: float = 0.0,
    history_diffs: Sequence[Sequence[float]] = (),
    history_replicates: Sequence[Sequence[float]] = (),
    incumbent_only: Sequence[float] = (),
    *,
    min_diff_df: int = 20,
    robust: Robust = "none",
    trim: float = 0.2,
) -> TestResult:
    """Paired t-test on matched seeds with the variance pooled over the campaign's history.

    When the incumbent also has runs on unmatched seeds, the candidate's mean may instead be compared with
    the incumbent's mean over all its m replicates, with Var = σ²(1/n + 1/m): an upper bound whenever the
    pairing correlation ρ ≥ 0 (the true value is σ²(1/n + 1/m) − 2ρσ²/m). With weak pairing this beats the
    paired difference's 2σ²(1 − ρ)/n, and it does not tie every hypothesis's first look to one incumbent
    run. The one with the smaller estimated standard error is used; the choice depends on variance
    estimates only, never on the effect.
    """
    sign = _sign(direction)
    imp = np.array([sign * (c - i) for c, i in pairs], float)  # improvement per seed
    var, df = pooled_variance(
        imp, history_diffs, history_replicates, min_diff_df=min_diff_df, robust=robust, trim=trim
    )
    loc = _location_scale(imp, robust, trim)[0] if len(imp) else math.nan
    name = {"none": "paired-t", "trim": "paired trimmed-t", "winsor": "paired winsorized-t"}[robust]
    name += " (pooled var)" if df > max(len(imp) - 1, 0) else ""
    n = len(imp)
    se = math.sqrt(var / n) if df > 0 and var > 0 else math.inf
    if incumbent_only and robust == "none":
        cand = [c for c, _ in pairs]
        inc = [i for _, i in pairs] + list(incumbent_only)
        var1, df1 = pooled_single_variance([*history_replicates, cand])
        se1 = math.sqrt(var1 * (1.0 / n + 1.0 / len(inc))) if df1 > 0 and var1 > 0 else math.inf
        if se1 < se:
            loc, se, df = sign * (float(np.mean(cand)) - float(np.mean(inc))), se1, df1
            name = "mean vs incumbent mean t (pooled var)"
    if not math.isfinite(se):
        return TestResult(test=name, statistic=None, p_value=None, effect=loc, se=None, df=None,
                          n_candidate=n, n_incumbent=n + len(incumbent_only))
    t = (loc - delta) / se
    return TestResult(test=name, statistic=t, p_value=float(sps.t.sf(t, df)), effect=loc, se=se, df=df,
                      n_candidate=n, n_incumbent=n + len(incumbent_only))


def two_sample_test(
    candidate: Sequence[float],
    incumbent: Sequence[float],
    direction: str,
    delta: float = 0.0,
    history_replicates: Sequence[Sequence[float]] = (),
    *,
    robust: Robust = "none",
    trim: float = 0.2,
) -> TestResult:
    """Welch's (or Yuen's, with trim) t-test for unmatched runs; pooled-variance t when a side has one run."""
    sign = _sign(direction)
    # Shift the candidate by the margin so scipy's H0 "means equal" becomes "improvement = δ".
    cand = np.asarray(candidate, float) - sign * delta
    inc = np.asarray(incumbent, float)
    alt = "greater" if sign > 0 else "less"
    effect = sign * (float(np.mean(candidate)) - float(np.mean(inc)))
    nc, ni = len(cand), len(inc)
    if nc >= 2 and ni >= 2 and not history_replicates:
        g = trim if robust == "trim" else 0.0
        a, b = (cand, inc) if robust != "winsor" else (_winsorize(cand, trim), _winsorize(inc, trim))
        r = sps.ttest_ind(a, b, equal_var=False, alternative=alt, trim=g)
        if g:
            effect = sign * (float(sps.trim_mean(candidate, g)) - float(sps.trim_mean(inc, g)))
        # scipy gives t = (shifted difference) / se; recover se from it (Welch's when t happens to be 0).
        se = abs((effect - delta) / r.statistic) if r.statistic else math.sqrt(
            np.var(a, ddof=1) / nc + np.var(b, ddof=1) / ni)
        name = {"none": "welch", "trim": "yuen", "winsor": "welch (winsorized)"}[robust]
        return TestResult(test=name, statistic=float(r.statistic) * sign, p_value=float(r.pvalue),
                          effect=effect, se=se, df=float(r.df), n_candidate=nc, n_incumbent=ni)
    # Too few runs on a side for Welch, or history to lean on: pooled single-run variance, common σ.
    var, df = pooled_single_variance([*history_replicates, list(candidate), list(inc)], robust, trim)
    if nc == 0 or ni == 0 or df == 0 or not var > 0:
        return TestResult(test="two-sample t (pooled var)", statistic=None, p_value=None,
                          effect=effect if nc and ni else math.nan, se=None, df=None,
                          n_candidate=nc, n_incumbent=ni)
    se = math.sqrt(var * (1.0 / nc + 1.0 / ni))
    t = (effect - delta) / se
    return TestResult(test="two-sample t (pooled var)", statistic=t, p_value=float(sps.t.sf(t, df)),
                      effect=effect, se=se, df=df, n_candidate=nc, n_incumbent=ni)


# ------------------------------------------------------------------------------------- proportions


def proportion_test(
    cand_successes: int,
    cand_trials: int,
    inc_successes: int,
    inc_trials: int,
    direction: str,
    delta: float = 0.0,
    *,
    min_expected: float = 5.0,
) -> TestResult:
    """Two-proportion z-test of H0: improvement ≤ δ; Fisher's exact test when δ = 0 and counts are small.

    δ = 0 uses the pooled standard error (the classical test); δ ≠ 0 uses the unpooled (Wald) standard
    error, since under H0 the two rates differ. For a minimized rate (errors) improvement = p_inc − p_cand.
    """
    sign = _sign(direction)
    pc, pi = cand_successes / cand_trials, inc_successes / inc_trials
    effect = sign * (pc - pi)
    table = np.array([[cand_successes, cand_trials - cand_successes],
                      [inc_successes, inc_trials - inc_successes]])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    se_unpooled = math.sqrt(pc * (1 - pc) / cand_trials + pi * (1 - pi) / inc_trials)
    if delta == 0 and expected.min() < min_expected:
        _, p = sps.fisher_exact(table, alternative="greater" if sign > 0 else "less")
        return TestResult(test="fisher exact", statistic=None, p_value=float(p), effect=effect,
                          se=se_unpooled or None, df=None, n_candidate=cand_trials, n_incumbent=inc_trials)
    if delta == 0:
        p0 = (cand_successes + inc_successes) / (cand_trials + inc_trials)
        se_test = math.sqrt(p0 * (1 - p0) * (1 / cand_trials + 1 / inc_trials))
        name = "two-proportion z"
    else:
        se_test, name = se_unpooled, "two-proportion z (margin)"
    if not se_test > 0:
        return TestResult(test=name, statistic=None, p_value=None, effect=effect, se=None, df=None,
                          n_candidate=cand_trials, n_incumbent=inc_trials)
    z = (effect - delta) / se_test
    return TestResult(test=name, statistic=z, p_value=float(sps.norm.sf(z)), effect=effect,
                      se=se_unpooled or se_test, df=None, n_candidate=cand_trials, n_incumbent=inc_trials)


def sums_test(cand: tuple[float, float, float], inc: tuple[float, float, float], direction: str,
              delta: float = 0.0) -> TestResult:
    """Welch's test of H0: improvement ≤ δ from each arm's per-unit sufficient statistics (n, Σx, Σx²).

    With a single unit on one side (one run of an independent design) its variance is unknown: Student's
    pooled-variance t, which then takes the other side's variance and df.
    """
    sign = _sign(direction)
    (nc, sc, ssc), (ni, si, ssi) = cand, inc
    one_unit = nc < 2 or ni < 2
    name = "t (one unit, pooled var)" if one_unit else "welch (sums)"
    if nc < 1 or ni < 1 or nc + ni < 3:
        return TestResult(test=name, statistic=None, p_value=None, effect=0.0, se=None, df=None,
                          n_candidate=int(nc), n_incumbent=int(ni))
    mc, mi = sc / nc, si / ni
    vc = max(ssc - nc * mc * mc, 0.0) / (nc - 1) if nc > 1 else 0.0
    vi = max(ssi - ni * mi * mi, 0.0) / (ni - 1) if ni > 1 else 0.0
    if one_unit:
        df = nc + ni - 2.0
        se = math.sqrt(((nc - 1) * vc + (ni - 1) * vi) / df * (1.0 / nc + 1.0 / ni))
    else:
        se = math.sqrt(vc / nc + vi / ni)
        df = (vc / nc + vi / ni) ** 2 / ((vc / nc) ** 2 / (nc - 1) + (vi / ni) ** 2 / (ni - 1)) if se > 0 else 0.0
    effect = sign * (mc - mi)
    if not se > 0:
        return TestResult(test=name, statistic=None, p_value=None, effect=effect, se=None, df=None,
                          n_candidate=int(nc), n_incumbent=int(ni))
    # Shifting the candidate's mean by δ turns H0: improvement ≤ δ into a plain two-sample test.
    res = sps.ttest_ind_from_stats(mc - sign * delta, math.sqrt(vc), nc, mi, math.sqrt(vi), ni,
                                   equal_var=one_unit, alternative="greater" if sign > 0 else "less")
    return TestResult(test=name, statistic=sign * float(res.statistic), p_value=float(res.pvalue),
                      effect=effect, se=se, df=df, n_candidate=int(nc), n_incumbent=int(ni))
