"""The holdback: the incumbent against the baseline, head to head, on runs no selection used.

Summing each accept's confirmed effect is unbiased but adds one confirmation's variance per accept, so after
a few accepts its interval is wider than the lift it measures. Experimentation platforms keep a holdback
instead: some traffic still sees the original page, so the total is one direct comparison. Holdback runs
have role "holdback", run on seeds of their own (`seeds`) and are never read by the judge
(planner.RunIndex skips them).

Concurrent (A/B) designs: every holdback run is one window of the incumbent (the run's arm) against the
baseline (its control). One window as soon as an accept is confirmed (the number stays current while the
campaign runs), then, once the campaign has nothing else to run, enough windows for the final incumbent to
bring the 95% interval of its relative lift to ± `holdback_precision` (`runs_needed`, from the windows so
far, or from the baseline's calibration windows before any), at most `holdback_max_runs`.

Independent designs (each run alone): once the campaign has nothing else to run, k runs of the incumbent
and k of the baseline on the same k fresh seeds (`paired`), k for ± `holdback_precision` (`pairs_needed`),
at most `holdback_max_pairs`. The incumbent's own runs cannot measure it: later challengers were judged
against them, and an incumbent survives when its runs came out lucky, so they favour it. The pairs'
differences cancel the seed's noise; their variance is pooled with the campaign's other paired differences
(the judge's own pool, `stats.pooled_variance`), so two pairs already give an interval (`measure_paired`).

Budgets: the holdback's visitors (A/B), runs and time (`reserve`) are kept back from `max_units`,
`max_runs` and `time_limit` from the start, so a budget never leaves the total unmeasured.

The lift is relative, sign-adjusted so that > 0 is better: (m1 − m0) / |m0| when maximizing, (m0 − m1) / |m0|
when minimizing, with m1 the incumbent's mean and m0 the baseline's (A/B: pooled per unit); its interval is
the delta method's, as are the absolute difference's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledgerlab.kinds import RunRole

if TYPE_CHECKING:
    from ledgerlab.core.judge import JudgeSettings
    from ledgerlab.core.protocols import MetricSpec
    from ledgerlab.core.state import CampaignState, RunRecord

ROLE: RunRole = "holdback"
SEED_OFFSET = 500_000  # holdback seeds sit in the upper half of the campaign's seed range (planner.SEED_STRIDE)
SEEDS_PER_INCUMBENT = 64  # the k-th incumbent of the lineage uses seeds offset + 64 k ... (cap: max runs ≤ 64)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Lift:
    """The incumbent's improvement over the baseline on holdback windows: absolute and relative, 95% intervals."""

    effect: float
    low: float | None
    high: float | None
    relative: float
    relative_low: float | None
    relative_high: float | None
    runs: int
    method: str

    @property
    def relative_half_width(self) -> float | None:
        if self.relative_low is None or self.relative_high is None:
            return None
        return (self.relative_high - self.relative_low) / 2


@dataclass(frozen=True)
class Reserve:
    """What the holdback still needs, kept back from the budgets hypothesis work runs under."""

    units: float = 0.0
    runs: int = 0
    seconds: float = 0.0


def recorded_settings(judge: Mapping[str, Any]) -> JudgeSettings:
    """The judge settings a campaign recorded in CampaignStarted: the judge it keeps when it resumes.

    Settings it predates were filled in on read with what it ran with (storage/events.py's upcasters); a
    recorded dict that no longer validates is a one-line ConfigError.
    """
    from ledgerlab.core.config import validated
    from ledgerlab.core.judge import JudgeSettings

    return validated(JudgeSettings, dict(judge), "the campaign's recorded judge settings")


def enabled(state: CampaignState, settings: JudgeSettings) -> bool:
    """Whether this campaign keeps a holdback: `holdback_max_runs` (A/B) or `holdback_max_pairs` > 0."""
    if state.started is None:
        return False
    if state.started.design == "concurrent":
        return settings.holdback_max_runs > 0
    return settings.holdback_max_pairs > 0


def depth(state: CampaignState, candidate_id: str) -> int:
    """How many accepts lie between the baseline and `candidate_id` (the baseline: 0)."""
    n, cid = 0, candidate_id
    while cid in state.incumbent_parent:
        cid, n = state.incumbent_parent[cid], n + 1
    return n


def seeds(state: CampaignState, candidate_id: str, count: int) -> list[int]:
    """The holdback seeds of an incumbent: its own block, disjoint from every seed selection uses."""
    assert state.started is not None
    first = state.started.seed_base + SEED_OFFSET + SEEDS_PER_INCUMBENT * depth(state, candidate_id)
    return [first + i for i in range(min(count, SEEDS_PER_INCUMBENT))]


def runs_of(state: CampaignState, candidate_id: str, *, finished_only: bool = True) -> list[RunRecord]:
    """The holdback runs of `candidate_id` (finished with a value, unless `finished_only` is False)."""
    return [r for r in state.runs.values() if r.role == ROLE and r.candidate_id == candidate_id
            and (not finished_only or (r.status == "finished" and r.value is not None))]


def calibration_runs(state: CampaignState) -> list[RunRecord]:
    """The baseline's A/A calibration windows (baseline against itself): the noise before any holdback."""
    assert state.started is not None
    base = state.started.baseline_candidate_id
    return [r for r in state.runs.values() if r.role == "incumbent" and r.candidate_id == base
            and r.hypothesis_id is None and r.status == "finished" and r.value is not None
            and r.control_value is not None]


def measure(metric: MetricSpec, runs: list[RunRecord]) -> Lift | None:
    """The lift the windows `runs` show (arm over control), pooled at the unit level where they report units."""
    if not runs:
        return None
    arms = _pooled(metric, runs)
    if arms is None:
        return _per_run(metric, runs)
    (m1, v1), (m0, v0) = arms
    sign = -1.0 if metric.direction == "minimize" else 1.0
    effect, half = sign * (m1 - m0), Z95 * math.sqrt(v1 + v0)
    if m0 == 0:
        return None
    relative = effect / m0
    rel_half = Z95 * math.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4)
    spread = _between_windows(metric, runs)
    if spread is not None:  # windows differ by more than their visitors show (hour of day, day of week)
        half, rel_half = max(half, spread[0]), max(rel_half, spread[1])
    method = (f"holdback: incumbent vs baseline in {len(runs)} same-window run(s), pooled units, delta method"
              + (", widened to the spread between windows" if spread is not None else ""))
    return Lift(effect, effect - half, effect + half, relative, relative - rel_half, relative + rel_half,
                len(runs), method)


def current(state: CampaignState) -> Lift | None:
    """The incumbent's holdback lift so far (None: the baseline is the incumbent, or no window finished yet)."""
    assert state.started is not None
    if state.incumbent_id == state.started.baseline_candidate_id:
        return None
    if state.started.design == "concurrent":
        return measure(state.metric, runs_of(state, state.incumbent_id))
    pairs = paired(state, state.incumbent_id)
    min_df = recorded_settings(state.started.judge).min_diff_df
    noise = pair_noise(state, [a - b for a, b in pairs], min_df)
    return measure_paired(state.metric, pairs, noise, baseline_noise(state))


def needed(state: CampaignState, settings: JudgeSettings, uninformed: int | None = None) -> int:
    """Holdback windows (A/B) or pairs (independent) the incumbent needs for the stated precision.

    `uninformed`: the pairs to plan on while nothing tells their noise yet (default: the cap).
    """
    assert state.started is not None
    if state.started.design == "concurrent":
        return runs_needed(state, settings, uninformed)
    return pairs_needed(state, settings, uninformed)


def reserve(state: CampaignState, settings: JudgeSettings, slots: int) -> Reserve:
    """The visitors (A/B), runs and seconds the holdback still needs (none where it is off).

    Kept from the start, while the baseline is still the incumbent: an accept near the end of a budget
    would otherwise leave no room to measure it. Seconds: the runs left in rounds of `slots`, each as long
    as the incumbent's and the baseline's runs took on average so far.
    """
    if not enabled(state, settings):
        return Reserve()
    assert state.started is not None
    # Before any run tells the noise, the fewest (2): the cap would starve a small budget of runs.
    cap = settings.holdback_max_runs if state.started.design == "concurrent" else settings.holdback_max_pairs
    count = needed(state, settings, uninformed=min(2, cap))
    if state.started.design == "concurrent":
        started = len(runs_of(state, state.incumbent_id, finished_only=False))
        runs = max(0, count - started)
        units = reserve_units(state, settings)
    else:
        runs, units = max(0, 2 * count - len(_pair_runs(state))), 0.0
    return Reserve(units, runs, math.ceil(runs / max(slots, 1)) * typical_seconds(state))


def typical_seconds(state: CampaignState) -> float:
    """The mean wall-clock time of the incumbent's and the baseline's finished runs (else of any; 0: none)."""
    assert state.started is not None
    pair = {state.incumbent_id, state.started.baseline_candidate_id}
    done = [r.seconds for r in state.runs.values() if r.status == "finished" and r.seconds is not None]
    own = [r.seconds for r in state.runs.values() if r.status == "finished" and r.seconds is not None
           and r.candidate_id in pair]
    chosen = own or done
    return statistics.fmean(chosen) if chosen else 0.0


# ------------------------------------------------------------------------------- independent designs


def _pair_runs(state: CampaignState) -> list[RunRecord]:
    """The holdback runs, finished or running, of the incumbent and the baseline on the incumbent's seeds."""
    assert state.started is not None
    block = set(seeds(state, state.incumbent_id, SEEDS_PER_INCUMBENT))
    if state.incumbent_id == state.started.baseline_candidate_id:
        return []
    arms = (state.incumbent_id, state.started.baseline_candidate_id)
    return [r for cid in arms for r in runs_of(state, cid, finished_only=False)
            if r.seed in block and r.status in ("finished", "running")]


def paired(state: CampaignState, candidate_id: str) -> list[tuple[float, float]]:
    """(incumbent, baseline) values on each of `candidate_id`'s holdback seeds where both runs finished."""
    assert state.started is not None
    block = set(seeds(state, candidate_id, SEEDS_PER_INCUMBENT))
    # runs_of gives finished runs, each with a value (the `is not None` only says so to the type checker)
    ours = {r.seed: float(r.value) for r in runs_of(state, candidate_id) if r.seed in block and r.value is not None}
    base = {r.seed: float(r.value) for r in runs_of(state, state.started.baseline_candidate_id)
            if r.seed in block and r.value is not None}
    return [(ours[s], base[s]) for s in sorted(set(ours) & set(base))]


def pair_noise(state: CampaignState, own: list[float], min_diff_df: int) -> tuple[float, int]:
    """The variance of one paired difference and its df: `own` pooled with the campaign's, as the judge pools.

    The holdback's few pairs alone would give a t quantile of 12.7 at two pairs; the judge already assumes
    one paired-difference variance for all changes of a campaign (core/stats.py), and so does this.
    """
    from ledgerlab.core import planner, stats

    diffs, replicates = planner.history(state)
    return stats.pooled_variance(own, diffs, replicates, min_diff_df=min_diff_df)


def baseline_noise(state: CampaignState) -> tuple[float, int]:
    """The variance of one baseline run (every finished one) and its df: the ratio's denominator noise."""
    assert state.started is not None
    values = [float(r.value) for r in state.finished_runs(state.started.baseline_candidate_id)
              if r.value is not None]
    return (statistics.variance(values), len(values) - 1) if len(values) >= 2 else (math.nan, 0)


def measure_paired(metric: MetricSpec, pairs: list[tuple[float, float]], noise: tuple[float, int],
                   base: tuple[float, int]) -> Lift | None:
    """The lift k (incumbent, baseline) pairs show: the mean difference, and its share of the baseline's mean.

    Absolute: t interval with the pooled paired variance `noise` (variance, df). Relative R = D / |m0|: the
    delta method, Var(R) = [σd² + s·R·σd² + R²·σ0²] / (k·m0²), s = ±1 (> 0 where the incumbent's and the
    baseline's runs share noise), since with equal run variances Cov(d, x0) = −σd²/2 (capped at σd·σ0);
    σ0² is one baseline run's variance (`base`), t at the smaller of the two df.
    """
    if not pairs:
        return None
    sign = -1.0 if metric.direction == "minimize" else 1.0
    k = len(pairs)
    effect = statistics.fmean(sign * (a - b) for a, b in pairs)
    m0 = statistics.fmean(b for _, b in pairs)
    if m0 == 0:
        return None
    (var_d, df_d), (var_0, df_0) = noise, base
    relative = effect / abs(m0)
    low = high = rel_low = rel_high = None
    if df_d > 0:
        half = _t(df_d) * math.sqrt(var_d / k)
        low, high = effect - half, effect + half
    if df_d > 0 and df_0 > 0:
        cross = sign * math.copysign(1.0, m0) * relative * min(var_d, 2 * math.sqrt(var_d * var_0))
        rel_half = _t(min(df_d, df_0)) * math.sqrt(max(var_d + cross + relative**2 * var_0, 0.0) / (k * m0**2))
        rel_low, rel_high = relative - rel_half, relative + rel_half
    method = (f"holdback: incumbent vs baseline on {k} fresh seed(s) each, paired; t with the campaign's "
              f"pooled paired variance ({df_d} df), relative by the delta method")
    return Lift(effect, low, high, relative, rel_low, rel_high, k, method)


def pairs_needed(state: CampaignState, settings: JudgeSettings, uninformed: int | None = None) -> int:
    """Pairs the incumbent's holdback needs for a relative half-width of `holdback_precision` (2 at least).

    From the pooled variances and the lift so far (the incumbent's pairs, else its own runs: only the size
    depends on them, never the estimate); `uninformed` (default: the cap) where there are none yet.
    """
    assert state.started is not None
    cap = min(settings.holdback_max_pairs, SEEDS_PER_INCUMBENT)
    base = [float(r.value) for r in state.finished_runs(state.started.baseline_candidate_id)
            if r.value is not None]
    pairs = paired(state, state.incumbent_id)
    var_d, df_d = pair_noise(state, [a - b for a, b in pairs], settings.min_diff_df)
    if len(base) < 2 or df_d == 0 or statistics.fmean(base) == 0:
        return cap if uninformed is None else uninformed
    sign = -1.0 if state.metric.direction == "minimize" else 1.0
    m0, var_0 = statistics.fmean(base), statistics.variance(base)
    ours = [a for a, _ in pairs] or [float(r.value) for r in state.finished_runs(state.incumbent_id)
                                     if r.value is not None] or [m0]
    relative = sign * (statistics.fmean(ours) - m0) / abs(m0)
    cross = sign * math.copysign(1.0, m0) * relative * min(var_d, 2 * math.sqrt(var_d * var_0))
    one = max(var_d + cross + relative**2 * var_0, 0.0) / m0**2  # the relative lift's variance from one pair
    need = math.ceil(Z95**2 * one / settings.holdback_precision**2)
    return min(cap, max(2, need))


def _t(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def runs_needed(state: CampaignState, settings: JudgeSettings, uninformed: int | None = None) -> int:
    """Windows the incumbent's holdback needs for a relative half-width of `holdback_precision` (`uninformed`,
    default the cap, where no window tells the noise yet)."""
    cap = settings.holdback_max_runs
    done = runs_of(state, state.incumbent_id)
    basis = done if len(done) >= 2 else calibration_runs(state)
    got = measure(state.metric, basis)
    half = got.relative_half_width if got is not None else None
    if half is None or not math.isfinite(half):
        return cap if uninformed is None else uninformed
    need = math.ceil(len(basis) * (half / settings.holdback_precision) ** 2)
    return max(2, min(cap, need, SEEDS_PER_INCUMBENT))


def reserve_units(state: CampaignState, settings: JudgeSettings) -> float:
    """Units (visitors) to keep back from `max_units` for the holdback windows the incumbent still needs."""
    if not enabled(state, settings):
        return 0.0
    units = [float(r.metrics.get("units", 0) or 0) for r in calibration_runs(state)]
    per_run = sum(units) / len(units) if units else 0.0
    missing = max(0, runs_needed(state, settings) - len(runs_of(state, state.incumbent_id, finished_only=False)))
    return missing * per_run


def _pooled(metric: MetricSpec, runs: list[RunRecord]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(mean, variance of the mean) of each arm pooled over the runs, from counts or per-unit sums."""
    try:
        if metric.kind == "proportion":
            return tuple(_proportion(sum(int(a["successes"]) for a in arm), sum(int(a["trials"]) for a in arm))
                         for arm in _arms(runs))  # type: ignore[return-value]
        if metric.sums:
            n_key, s_key, ss_key = metric.sums
            return tuple(_mean_of_sums(sum(float(a[n_key]) for a in arm), sum(float(a[s_key]) for a in arm),
                                       sum(float(a[ss_key]) for a in arm))
                         for arm in _arms(runs))  # type: ignore[return-value]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None


def _arms(runs: list[RunRecord]) -> tuple[list[dict], list[dict]]:
    return [r.metrics for r in runs], [r.control_metrics for r in runs]


def _proportion(successes: int, trials: int) -> tuple[float, float]:
    p = successes / trials
    return p, p * (1 - p) / trials


def _mean_of_sums(n: float, total: float, total_sq: float) -> tuple[float, float]:
    mean = total / n
    var = max(total_sq / n - mean**2, 0.0) * n / max(n - 1, 1.0)
    return mean, var / n


def _between_windows(metric: MetricSpec, runs: list[RunRecord]) -> tuple[float, float] | None:
    """t half-widths of the absolute and relative lift from the per-window differences (3 windows or more).

    The truth is the lift over a whole week of traffic; each window sees a few hours of it, and the lift
    varies with the hour. The pooled units' interval knows only the visitors' noise, so where the windows
    disagree by more, their own spread (a random-effects interval over windows) is the honest width.
    """
    diffs, rels = _window_differences(metric, runs)
    if len(diffs) < 3:
        return None
    return _t_half(diffs), _t_half(rels)


def _per_run(metric: MetricSpec, runs: list[RunRecord]) -> Lift | None:
    """Runs that report only their two values: relative differences per window, a t interval over windows."""
    diffs, rels = _window_differences(metric, runs)
    if not diffs:
        return None
    method = f"holdback: incumbent vs baseline in {len(diffs)} same-window run(s), t over runs"
    effect, relative = statistics.fmean(diffs), statistics.fmean(rels)
    if len(diffs) < 2:
        return Lift(effect, None, None, relative, None, None, len(diffs), method)
    half, rel_half = _t_half(diffs), _t_half(rels)
    return Lift(effect, effect - half, effect + half, relative, relative - rel_half, relative + rel_half,
                len(diffs), method)


def _window_differences(metric: MetricSpec, runs: list[RunRecord]) -> tuple[list[float], list[float]]:
    """Each window's arm-minus-control difference and its share of the control (> 0 is better)."""
    sign = -1.0 if metric.direction == "minimize" else 1.0
    pairs = [(float(r.value), float(r.control_value)) for r in runs  # type: ignore[arg-type]
             if r.control_value is not None and r.control_value != 0]
    return [sign * (v - c) for v, c in pairs], [sign * (v - c) / c for v, c in pairs]


def _t_half(values: list[float]) -> float:
    """Half-width of the 95% t interval of the mean of `values` (2 or more)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
