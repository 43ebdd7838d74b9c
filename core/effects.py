"""Effects users read: how much better a candidate is, with a 95% interval, from a campaign's finished runs.

Every effect is signed so that > 0 is better. Where two candidates ran on the same seeds the comparison is
paired (the seed's noise cancels); otherwise it is Welch's. An accepted change is *confirmed* on the runs made
after its acceptance, never on the ones that selected it (no winner's curse in the numbers `status` shows).
The intervals are scipy's (`ttest_1samp` / `ttest_ind(equal_var=False)` `.confidence_interval`); a confirmed
A/B change pools its fresh runs' visitors with the judge's own test (`judge.pooled_test`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledgerlab.core import holdback

if TYPE_CHECKING:  # annotations only: `ledgerlab --help` imports this module and stays light
    from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord


@dataclass(frozen=True)
class Effect:
    """An improvement (> 0 is better) with its 95% interval (None ends with too few runs) and how it was got.

    `relative` (a share of the baseline's value, with its interval) is set where it was measured directly: the
    holdback (core/holdback.py).
    """

    effect: float
    low: float | None
    high: float | None
    method: str
    relative: float | None = None
    relative_low: float | None = None
    relative_high: float | None = None


def fresh_runs(state: CampaignState, cid: str) -> list[RunRecord]:
    """A candidate's finished runs as incumbent after it was selected (no winner's curse)."""
    return [r for r in state.runs.values() if r.candidate_id == cid and is_fresh(state, r)]


def is_fresh(state: CampaignState, run: RunRecord) -> bool:
    """Whether a run measures its candidate as incumbent after its selection: a finished incumbent run on a
    seed no judge used to select it (the progress charts apply the same rule, core/summary.py)."""
    return (run.role == "incumbent" and run.status == "finished" and run.value is not None
            and run.seed >= state.seed_base.get(run.candidate_id, 0))


def finished(state: CampaignState, cid: str) -> list[RunRecord]:
    """A candidate's finished runs that have a value."""
    return [r for r in state.finished_runs(cid) if r.value is not None]


def mean(values: list[float]) -> float | None:
    """The mean, or None for no values."""
    return sum(values) / len(values) if values else None


def values(runs: list[RunRecord]) -> list[float]:
    """The runs' values, in order (a finished run has one; the others are left out)."""
    return [float(r.value) for r in runs if r.value is not None]


def compare(state: CampaignState, new: list[RunRecord], old: list[RunRecord]) -> Effect | None:
    """Effect of `new` over `old`: paired on matched seeds when there are 2 or more, else Welch."""
    if not new or not old:
        return None
    sign = _sign(state)
    by_new, by_old = _by_seed(new), _by_seed(old)
    common = sorted(set(by_new) & set(by_old))
    if len(common) >= 2:
        return one_sample([sign * (by_new[s] - by_old[s]) for s in common],
                          f"paired t on {len(common)} matched seeds")
    a, b = values(new), values(old)
    effect = sign * (sum(a) / len(a) - sum(b) / len(b))
    method = f"Welch t, n={len(a)} vs n={len(b)}"
    if len(a) < 2 or len(b) < 2:
        return Effect(effect, None, None, method)
    from scipy import stats

    if len(set(a)) == 1 and len(set(b)) == 1:  # no spread at all: scipy's interval would be nan
        return Effect(effect, effect, effect, method)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    low, high = sorted((sign * float(ci.low), sign * float(ci.high)))
    return Effect(effect, low, high, method)


def confirmed(state: CampaignState, h: HypothesisRecord) -> Effect | None:
    """An accepted change measured on the fresh seeds run after its acceptance (not the ones that chose it).

    Concurrent designs (A/B) ran the new incumbent against the old one in the same window (value vs
    control_value); independent designs ran both on the same fresh seeds.
    """
    runs = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id and r.role == "incumbent"
            and r.status == "finished" and r.value is not None]
    new = [r for r in runs if r.candidate_id == h.candidate_id]
    windowed = [r for r in new if r.control_value is not None]
    if windowed and h.candidate_id != h.parent_candidate_id:
        return pooled_windows(state, windowed) or one_sample(
            [_sign(state) * (r.value - r.control_value) for r in windowed
             if r.value is not None and r.control_value is not None],
            f"same-window A/B on {len(windowed)} fresh runs")
    got = compare(state, new, [r for r in runs if r.candidate_id == h.parent_candidate_id])
    if got is None or not got.method.startswith("paired"):
        return None
    return Effect(got.effect, got.low, got.high, got.method.replace("matched seeds", "fresh seeds"))


def improvement(state: CampaignState, inc_fresh: list[RunRecord],
                base_runs: list[RunRecord]) -> Effect | None:
    """The incumbent's improvement over the baseline, on runs that did not select it.

    Independent designs: the holdback pairs (core/holdback.py), the incumbent and the baseline on fresh
    seeds no judge read; None until one pair finished. The incumbent's own runs after its selection are no
    measure: later challengers were judged against them, and an incumbent survives when they came out lucky.
    A/B designs (same-window runs): the holdback, the incumbent against the baseline in the same windows
    (core/holdback.py), or, while its interval is still the wider one (right after an accept), the sum of
    the confirmed effects along the incumbent's lineage, each from its own fresh A/B runs, so independent,
    with their variances added. Both are unbiased; which one is shown depends only on their widths. Runs in
    different traffic windows differ by more than their visitors show (time of day, day of week), so
    comparing the incumbent's windows with the baseline's would be both noisier and less fair. Otherwise
    (a campaign recorded without a holdback, or an A/B link still unconfirmed): the incumbent's runs after
    selection vs the baseline's (`compare`).
    """
    assert state.started is not None
    if state.started.design == "concurrent":
        chained, held = lineage_sum(state), _holdback(state)
        if held is not None and (chained is None or _width(held) <= _width(chained)):
            return held
        if chained is not None:
            return chained
    elif holdback_on(state):  # only the pairs no selection used; until they finish: not measured yet
        lift = holdback.current(state)
        return None if lift is None else Effect(lift.effect, lift.low, lift.high, lift.method, lift.relative,
                                                lift.relative_low, lift.relative_high)
    got = compare(state, inc_fresh, base_runs)
    return got and Effect(got.effect, got.low, got.high,
                          f"the incumbent's runs after selection vs the baseline's; {got.method}")


def holdback_on(state: CampaignState) -> bool:
    """Whether the campaign keeps a holdback, by the settings it recorded when it started."""
    assert state.started is not None
    return holdback.enabled(state, holdback.recorded_settings(state.started.judge))


def _no_confirm_runs(state: CampaignState) -> bool:
    """Whether the campaign's judge runs nothing after an accept (greedy, `confirm_runs = 0`)."""
    assert state.started is not None
    return state.started.judge.get("confirm_runs") == 0  # old ledgers lack the key: they ran the default


def unconfirmed_reason(state: CampaignState, h: HypothesisRecord) -> str:
    """Why accepted `h` has no confirmed effect, in words for `status` (after "not confirmed")."""
    if _no_confirm_runs(state):
        return "its judge makes no confirmation runs (confirm_runs = 0)"
    if h.candidate_id != state.incumbent_id:  # only the incumbent gets fresh runs
        return "a later accept replaced it before its fresh runs finished"
    if state.status == "finished":  # nothing runs any more: the accept came as a budget ran out
        return "the campaign finished before its fresh runs"
    return "its fresh runs are to come"


def not_measured_reason(state: CampaignState) -> str:
    """Why the improvement is not measured (yet, while the campaign can still run), in words for `status`."""
    assert state.started is not None
    finished = state.status == "finished"
    if state.started.design == "concurrent" or not holdback_on(state):
        if finished and _no_confirm_runs(state):
            return "its judge makes no runs after selection (confirm_runs = 0)"
        if finished:
            return "the campaign finished before the incumbent ran again after its selection"
        return "needs baseline runs and incumbent runs after selection"
    if any(r.role == holdback.ROLE and r.candidate_id == state.incumbent_id for r in state.runs.values()):
        if finished:
            return "its holdback runs failed: `ledgerlab sql \"select * from runs where role = 'holdback'\"`"
        return "its holdback runs are under way: the incumbent and the baseline on fresh seeds"
    if finished:
        return "the campaign finished before its holdback ran"
    return ("measured by a holdback when the campaign has nothing else to run: the incumbent and the baseline "
            "on fresh seeds no judge reads")


def lineage_sum(state: CampaignState) -> Effect | None:
    """The confirmed effects of the accepts from the baseline to the incumbent, added (None: one lacks it)."""
    assert state.started is not None
    links: list[Effect] = []
    widths: list[float] = []  # each link's interval, high - low
    cid = state.incumbent_id
    while cid != state.started.baseline_candidate_id:
        origin = state.candidate_parent.get(cid)
        record = state.hypotheses.get(origin[1]) if origin else None
        if origin is None or record is None or record.status != "accepted":
            return None
        link = confirmed(state, record)
        if link is None or link.low is None or link.high is None:
            return None
        links.append(link)
        widths.append(link.high - link.low)
        cid = origin[0]
    if not links:
        return None
    from scipy import stats

    z = float(stats.norm.isf(0.025))
    total = sum(e.effect for e in links)
    se = sum((width / (2 * z)) ** 2 for width in widths) ** 0.5
    method = (f"sum of the {len(links)} accepted changes' effects, each confirmed on its own fresh "
              f"same-window A/B runs" if len(links) > 1 else links[0].method)
    return Effect(total, total - z * se, total + z * se, method)


def _holdback(state: CampaignState) -> Effect | None:
    lift = holdback.current(state)
    if lift is None or lift.low is None or lift.high is None:
        return None
    return Effect(lift.effect, lift.low, lift.high, lift.method, lift.relative, lift.relative_low,
                  lift.relative_high)


def _width(e: Effect) -> float:
    return float("inf") if e.low is None or e.high is None else e.high - e.low


def pooled_windows(state: CampaignState, runs: list[RunRecord]) -> Effect | None:
    """Same-window A/B runs pooled at the unit level, with the judge's own test; None for per-run values only.

    A visitor-level interval: with two runs a t-interval over per-run differences has one degree of freedom
    and is uselessly wide, though each run holds thousands of visitors.
    """
    from ledgerlab.core.judge import pooled_test
    from ledgerlab.core.planner import concurrent_evidence

    try:
        result = pooled_test(concurrent_evidence(runs, state.metric))
    except (KeyError, TypeError, ValueError):  # runs that did not report the counts or sums
        return None
    if result is None:
        return None
    low, high = result.interval(0.95)
    method = f"{result.test} on {len(runs)} fresh same-window A/B runs, pooled"
    return Effect(result.effect, low, high, method)


def one_sample(diffs: list[float], method: str) -> Effect:
    """The mean of per-run improvements with its t-interval (none from a single value)."""
    m = sum(diffs) / len(diffs)
    if len(diffs) < 2 or len(set(diffs)) == 1:  # scipy's interval needs a spread
        return Effect(m, None, None, method) if len(diffs) < 2 else Effect(m, m, m, method)
    from scipy import stats

    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    return Effect(m, float(ci.low), float(ci.high), method)


def _sign(state: CampaignState) -> float:
    return -1.0 if state.metric.direction == "minimize" else 1.0


def _by_seed(runs: list[RunRecord]) -> dict[int, float]:
    values: dict[int, list[float]] = {}
    for r in runs:
        if r.value is not None:  # every caller passes finished runs, which have one
            values.setdefault(r.seed, []).append(r.value)
    return {seed: sum(v) / len(v) for seed, v in values.items()}
