"""The holdback: the incumbent against the baseline, head to head in the same windows, on runs no selection used.

Concurrent (A/B) designs only. Summing each accept's confirmed effect is unbiased but adds one confirmation's
variance per accept, so after a few accepts its interval is wider than the lift it measures. Experimentation
platforms keep a holdback instead: some traffic still sees the original page, so the total is one direct
comparison. Here every holdback run is one window of the incumbent (the run's arm) against the baseline (its
control), on seeds of its own (`seeds`), never read by the judge (role "holdback": planner.RunIndex skips it).

When: one window as soon as an accept is confirmed (the number stays current while the campaign runs), then,
once the campaign has nothing else to run, enough windows for the final incumbent to bring the 95% interval
of its relative lift to ± `holdback_precision` (`runs_needed`, from the windows so far, or from the baseline's
calibration windows before any), at most `holdback_max_runs`. Those windows' visitors are reserved from
`max_units` (`reserve_units`), so a visitor budget never leaves the total unmeasured.

The lift is relative, sign-adjusted so that > 0 is better: (m1 − m0) / m0 when maximizing, (m0 − m1) / m0
when minimizing, with m1 the incumbent's pooled per-unit mean and m0 the baseline's; its interval is the
delta method's (normal, on the pooled units), as are the absolute difference's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledgerlab.core.judge import JudgeSettings
    from ledgerlab.core.protocols import MetricSpec
    from ledgerlab.core.state import CampaignState, RunRecord

ROLE = "holdback"
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


def enabled(state: CampaignState, settings: JudgeSettings) -> bool:
    """Whether this campaign keeps a holdback: a concurrent design with `holdback_max_runs` > 0."""
    return state.started is not None and state.started.design == "concurrent" and settings.holdback_max_runs > 0


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
    return measure(state.metric, runs_of(state, state.incumbent_id))


def runs_needed(state: CampaignState, settings: JudgeSettings) -> int:
    """Windows the incumbent's holdback needs for a relative half-width of `holdback_precision`."""
    cap = settings.holdback_max_runs
    done = runs_of(state, state.incumbent_id)
    basis = done if len(done) >= 2 else calibration_runs(state)
    got = measure(state.metric, basis)
    half = got.relative_half_width if got is not None else None
    if half is None or not math.isfinite(half):
        return cap
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
