"""The judge: decides from a hypothesis's runs whether its change is kept ("accept"), dropped ("reject"), or
needs more replicates ("more").

How to use: `judge = make_judge(JudgeSettings(...)); judge.judge(evidence, alpha)` after each batch of runs
(start with `judge.first_n()` candidate replicates; on "more", run up to `need` and call again). The settings
(the `[judge]` table, `judge_settings`, GREEDY_DEFAULTS) live in core/judge_settings.py, re-exported here.

The "stats" policy is a group-sequential one-sided test (statistics in `core/stats.py`):

* Looks at `looks` cumulative candidate replicates (default 1, 2, 3, 4, 6, 8). At look k it accepts when
  the one-sided p-value of H0 "improvement ≤ δ" is ≤ a_k, and α is paid for the peeking by an α-spending
  function over the fixed maximum number of looks: look k may spend α_k (`spending="information"`, the
  default: α·(n_k − n_{k−1})/n_K, a linear spending function; "equal": α/K), Σ α_k = α. The levels a_k
  are the exact group-sequential boundaries for those spends under normal theory
  (`stats.sequential_levels`); they take credit for the futility bound (a null hypothesis that reaches
  look 3 has already survived two futility checks) only when futility is binding (`futility_min_df = 0`).
  No a_k exceeds α. The p-values come from t distributions with the pooled df; using normal-theory
  boundaries on them is the usual approximation, checked by simulation.
* Futility: before the last look a hypothesis is rejected when its p-value is above the look's futility
  level: `futility_p` at the first look, then (`futility_scale="effect"`, the default) the same bound on
  the effect, so the z bound grows as √(n_k/n_1) (`stats.futility_levels`). That is what makes most (bad)
  hypotheses cost one run: a null hypothesis continues past look 1 with probability about `futility_p`,
  and one that did rarely survives the rising bound, while a real change's z grows like √n. Looks at
  every run early on keep a null that got lucky once from paying for a doubling of its runs. The loop
  never overrules a futility reject (reject is final), so binding credit is sound when it is taken.
* Skewed and heavy-tailed runs (latency, revenue, reward): run-level evidence is accepted only from
  `accept_from` (3) replicates on, and the comparison with the incumbent's mean over all its replicates
  only when their skewness toward improvement is ≤ `skew_max`, else the paired difference, symmetric
  under a useless change whatever the noise (`stats.skew_below`). Measured α on lognormal and t(3) noise:
  docs/judge.md.
* The interval reported is two-sided at level 1 − 2α_k, so its lower end exceeds δ exactly when the test
  accepts at that look: t-tests, and the proportions' score test, whose interval inverts the test itself
  (`stats.proportion_test`; with Fisher's exact test at small counts the interval is still the score test's).

"fixed" is the same test once, at `fixed_n` replicates and the full α. "greedy" is autoresearch's rule:
one run, kept when it is better than the incumbent's (no δ, no test). A single useless change is "better"
half the time, but the CLI compares every change with the incumbent's one run (GREEDY_DEFAULTS), so a
lucky run blocks the useless changes after it: in campaigns of 50 greedy keeps a quarter of them; with A/B runs, each against its own control, about half (docs/judge.md).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from ledgerlab.core import stats
from ledgerlab.core.judge_settings import FDR_TARGET, GREEDY_DEFAULTS, JudgeSettings, judge_settings
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.core.registry import load_judge
from ledgerlab.kinds import Decision, Design

__all__ = ["FDR_TARGET", "GREEDY_DEFAULTS", "Evidence", "FixedJudge", "GreedyJudge", "Judge", "JudgeBase",
           "JudgeSettings", "Judgement", "StatsJudge", "judge_settings", "make_judge", "n_candidate_runs",
           "pooled_test"]

# ----------------------------------------------------------------------------------------- values


class Evidence(BaseModel):
    """A hypothesis's runs so far, and the campaign's history the judge may pool variance from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: MetricSpec
    design: Design
    pairs: tuple[tuple[float, float], ...] = ()  # (candidate, incumbent) values on matched seeds
    candidate_only: tuple[float, ...] = ()  # candidate values with no matched incumbent run
    incumbent_only: tuple[float, ...] = ()  # incumbent values with no matched candidate run
    # proportion metrics, concurrent: per run (cand_successes, cand_trials, inc_successes, inc_trials)
    counts: tuple[tuple[int, int, int, int], ...] = ()
    # per-unit means, concurrent: per run (cand_units, cand_sum, cand_sumsq, inc_units, inc_sum, inc_sumsq)
    sums: tuple[tuple[float, float, float, float, float, float], ...] = ()
    history_diffs: tuple[tuple[float, ...], ...] = ()  # earlier hypotheses' paired differences (cand − inc)
    history_replicates: tuple[tuple[float, ...], ...] = ()  # groups of replicates of one candidate each


class Judgement(BaseModel):
    """The judge's answer after one look."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: Decision
    need: int  # when "more": total candidate replicates wanted before the next look
    test: str
    statistic: float | None
    p_value: float | None
    effect: float | None  # improvement, positive = better, metric units (minimize: incumbent − candidate)
    ci_low: float | None
    ci_high: float | None
    ci_level: float | None = None  # two-sided level of [ci_low, ci_high]: 1 − 2·α_look
    n_candidate: int
    n_incumbent: int
    alpha_spent: float  # α spent by the looks taken so far (spending function) (greedy: its null accept rate, 0.5)
    look: int  # 1-based; 0 when no look was taken yet
    reason: str


class Judge(Protocol):
    """Decides a hypothesis from its evidence at the level `alpha` allotted to it."""

    name: str

    def first_n(self) -> int:
        """Candidate replicates to run before the first look."""
        ...

    def judge(self, evidence: Evidence, alpha: float) -> Judgement:
        """Accept, reject, or ask for more replicates."""
        ...


class JudgeBase:
    """What the settings read from a judge's class before any judge exists (core/judge_settings.py).

    A judge registers under the entry-point group `ledgerlab.judges` (built-ins: pyproject.toml) as a class
    called with the resolved JudgeSettings; subclassing this base gives it the defaults below.
    """

    # [judge] keys this judge sets when the table leaves them unset (greedy: autoresearch's loop).
    defaults: ClassVar[dict[str, Any]] = {}
    # Whether an unset alpha_policy becomes "fdr" on concurrent designs (a test at a level alpha decides;
    # greedy and the fixed-n test are compared with autoresearch's rule at a fixed alpha).
    fdr_by_default: ClassVar[bool] = False

    name: str  # what verdicts and `status` call it

    def __init__(self, settings: JudgeSettings) -> None:
        """A judge is built on the resolved settings (core/registry.py's load_judge)."""

    @classmethod
    def most_runs(cls, settings: JudgeSettings) -> int:
        """The most candidate replicates a hypothesis can get; the seed rotation is at least this wide."""
        return settings.looks[-1]

    # The `Judge` members every judge defines.
    def first_n(self) -> int:
        raise NotImplementedError

    def judge(self, evidence: Evidence, alpha: float) -> Judgement:
        raise NotImplementedError


# ------------------------------------------------------------------------------------- helpers


def n_candidate_runs(evidence: Evidence) -> int:
    """Candidate replicates in the evidence (runs, for concurrent count data)."""
    if evidence.counts or evidence.sums:
        return len(evidence.counts or evidence.sums)
    return len(evidence.pairs) + len(evidence.candidate_only)


def pooled_test(ev: Evidence, delta: float = 0.0, min_expected: float = 5.0) -> stats.TestResult | None:
    """Same-window A/B runs pooled at the unit level: the proportion test on counts, Welch on per-unit sums.

    None for evidence of neither kind. Sample sizes are reported in runs, the judge's unit for looks.
    """
    m = ev.metric
    if ev.counts:
        cs, ct, is_, it = (sum(c[j] for c in ev.counts) for j in range(4))
        r = stats.proportion_test(cs, ct, is_, it, m.direction, delta, min_expected=min_expected)
    elif ev.sums:
        totals = [sum(run[j] for run in ev.sums) for j in range(6)]
        cand, inc = tuple(totals[:3]), tuple(totals[3:])
        r = stats.sums_test(cand, inc, m.direction, delta)  # type: ignore[arg-type]
    else:
        return None
    runs = len(ev.counts or ev.sums)
    return r.model_copy(update={"n_candidate": runs, "n_incumbent": runs})


def _fmt(x: float | None) -> str:
    """A number for a reason line."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _more(need: int, look: int, r: stats.TestResult | None, spent: float, reason: str) -> Judgement:
    """A "more" answer."""
    return Judgement(
        decision="more", need=need, test=r.test if r else "none", statistic=r.statistic if r else None,
        p_value=r.p_value if r else None, effect=_finite(r.effect) if r else None, ci_low=None,
        ci_high=None, n_candidate=r.n_candidate if r else 0, n_incumbent=r.n_incumbent if r else 0,
        alpha_spent=spent, look=look, reason=reason,
    )


def _finite(x: float | None) -> float | None:
    """None for nan/inf (Judgements hold only real numbers)."""
    return x if x is not None and math.isfinite(x) else None


# ------------------------------------------------------------------------------------ stats judge


class StatsJudge(JudgeBase):
    """Group-sequential one-sided test with a futility bound (also the one-look "fixed" judge).

    Futility is non-binding by default: the levels take credit for it only with `futility_min_df = 0`
    (see `JudgeSettings.futility_min_df`), so with the defaults α holds whichever way a futility check goes.
    """

    fdr_by_default = True

    def __init__(self, settings: JudgeSettings, name: str = "stats") -> None:
        self.settings = settings
        self.name = name

    def first_n(self) -> int:
        return self.settings.looks[0]

    def _test(self, ev: Evidence, delta: float) -> stats.TestResult:
        """The test the evidence calls for: pooled A/B units, matched pairs, or unmatched runs."""
        s, m = self.settings, ev.metric
        pooled = pooled_test(ev, delta, s.min_expected)
        if pooled is not None:
            return pooled
        if ev.pairs:
            return stats.paired_test(ev.pairs, m.direction, delta, ev.history_diffs, ev.history_replicates,
                                     ev.incumbent_only, min_diff_df=s.min_diff_df, robust=s.robust, trim=s.trim,
                                     skew_max=s.skew_max)
        return stats.two_sample_test(ev.candidate_only, ev.incumbent_only, m.direction, delta,
                                     ev.history_replicates, robust=s.robust, trim=s.trim)

    def judge(self, evidence: Evidence, alpha: float) -> Judgement:
        s = self.settings
        looks = s.looks
        n = n_candidate_runs(evidence)
        if n < looks[0]:
            return _more(looks[0], 0, None, 0.0, f"{n} of {looks[0]} replicates before the first look")
        k = max(i for i, m in enumerate(looks) if m <= n)  # extra replicates count toward the look reached
        last = k == len(looks) - 1
        binding = s.futility and s.futility_min_df <= 0
        fut = stats.futility_levels(s.futility_p, looks, s.futility_scale)
        # Only looks at ≥ accept_from replicates may accept; α is spent over those looks alone (the ones
        # before them can only drop or continue, which never adds type I error), and binding futility takes
        # credit only for the bounds at those looks (less credit: conservative). Pooled A/B evidence (counts,
        # per-unit sums) is exempt: its test rests on thousands of units per run, not on one run's value.
        first = 0 if evidence.counts or evidence.sums else s.first_accept_look
        fut_acc = tuple(fut[first:])
        acc_levels = stats.sequential_levels(alpha, looks[first:], fut_acc if binding else None, s.spending)
        spend = stats.look_spend(alpha, looks[first:], s.spending)
        can_accept = k >= first
        a_k = acc_levels[k - first] if can_accept else acc_levels[0]
        spent = sum(spend[: k - first + 1]) if can_accept else 0.0
        delta = evidence.metric.delta if s.delta is None else s.delta
        r = self._test(evidence, delta)
        where = f"at look {k + 1}/{len(looks)} (n={n})"
        if r.p_value is None:
            return self._no_variance(r, k, last, spent, delta, where)
        ci_low, ci_high = r.interval(1.0 - 2.0 * a_k)
        verdict: dict[str, Any] = dict(
            test=r.test, statistic=_finite(r.statistic), p_value=r.p_value, effect=_finite(r.effect),
            ci_low=_finite(ci_low), ci_high=_finite(ci_high), ci_level=1.0 - 2.0 * a_k, n_candidate=r.n_candidate,
            n_incumbent=r.n_incumbent, alpha_spent=spent, look=k + 1, need=0)  # Judgement's fields but three
        head = f"{r.test}: effect {_fmt(r.effect)}, p={_fmt(r.p_value)}"
        if can_accept and r.p_value <= a_k:
            return Judgement(decision="accept", **verdict,
                             reason=f"{head} <= {_fmt(a_k)} {where}: accepted (improvement > {_fmt(delta)})")
        if last:
            return Judgement(decision="reject", **verdict,
                             reason=f"{head} > {_fmt(a_k)} {where}, the last look: rejected")
        if s.futility and r.p_value > fut[k] and self._sure_enough(r, delta):
            return Judgement(decision="reject", **verdict,
                             reason=f"futility {where}: {head} > {_fmt(fut[k])}: rejected")
        if not can_accept:
            return _more(looks[k + 1], k + 1, r, spent,
                         f"{head} {where}: no accept before {looks[first]} replicates (one or two runs say "
                         f"nothing about the noise's tails), {looks[k + 1]} replicates for the next look")
        return _more(looks[k + 1], k + 1, r, spent,
                     f"{head} > {_fmt(a_k)} {where}: promising, {looks[k + 1]} replicates for the next look")

    def _sure_enough(self, r: stats.TestResult, delta: float) -> bool:
        """Whether a futility stop may rest on this test (enough df, or no improvement at all)."""
        df = r.df
        if df is None or not math.isfinite(df) or df >= self.settings.futility_min_df:
            return True
        return r.effect is not None and r.effect <= delta

    def _no_variance(self, r: stats.TestResult, k: int, last: bool, spent: float, delta: float,
                     where: str) -> Judgement:
        """No variance estimate (one run, no history): never accept; futility on the raw effect."""
        looks = self.settings.looks
        futile = self.settings.futility and r.effect is not None and math.isfinite(r.effect) \
            and r.effect <= delta
        if last or futile:
            why = "the last look" if last else f"effect {_fmt(r.effect)} <= {_fmt(delta)}"
            return Judgement(decision="reject", need=0, test=r.test, statistic=None, p_value=None,
                             effect=_finite(r.effect), ci_low=None, ci_high=None, n_candidate=r.n_candidate,
                             n_incumbent=r.n_incumbent, alpha_spent=spent, look=k + 1,
                             reason=f"no variance estimate {where}, {why}: rejected")
        return _more(looks[k + 1], k + 1, r, spent,
                     f"no variance estimate {where} (no history): {looks[k + 1]} replicates for the next look")


# ----------------------------------------------------------------------------------- greedy judge


class FixedJudge(StatsJudge):
    """The same test once, at `fixed_n` replicates and the full alpha (no futility stop)."""

    fdr_by_default = False

    def __init__(self, settings: JudgeSettings) -> None:
        super().__init__(settings.model_copy(update={"looks": (settings.fixed_n,), "futility": False}), name="fixed")

    @classmethod
    def most_runs(cls, settings: JudgeSettings) -> int:
        return settings.fixed_n


class GreedyJudge(JudgeBase):
    """autoresearch's rule: one run, kept when better than the incumbent (no margin, no test)."""

    name = "greedy"
    defaults = GREEDY_DEFAULTS

    def __init__(self, settings: JudgeSettings | None = None) -> None:
        self.settings = settings

    @classmethod
    def most_runs(cls, settings: JudgeSettings) -> int:
        return 1

    def first_n(self) -> int:
        return 1

    def judge(self, evidence: Evidence, alpha: float) -> Judgement:
        sign = 1.0 if evidence.metric.direction == "maximize" else -1.0
        if evidence.counts:
            cs, ct, is_, it = evidence.counts[0]
            effect: float | None = sign * (cs / ct - is_ / it)
        elif evidence.pairs:
            c, i = evidence.pairs[0]
            effect = sign * (c - i)
        elif evidence.candidate_only and evidence.incumbent_only:
            inc = sum(evidence.incumbent_only) / len(evidence.incumbent_only)
            effect = sign * (evidence.candidate_only[0] - inc)
        elif not evidence.candidate_only:
            return _more(1, 0, None, 0.0, "greedy: one candidate run needed")
        else:
            effect = None
        ok = effect is not None and effect > 0
        return Judgement(
            decision="accept" if ok else "reject", need=0, test="greedy", statistic=None, p_value=None,
            effect=effect, ci_low=None, ci_high=None, n_candidate=1, n_incumbent=1 if effect is not None else 0,
            alpha_spent=0.5, look=1,  # a null change is "better" about half the time
            reason=f"greedy: effect {_fmt(effect)} {'>' if ok else '<='} 0: {'accepted' if ok else 'rejected'}",
        )


def make_judge(settings: JudgeSettings) -> Judge:
    """The judge that `settings.kind` names, from the `ledgerlab.judges` entry-point group."""
    return load_judge(settings)
