"""Guardrails: secondary metrics an accepted change must not make significantly worse.

A/B practice: a page that converts more by cutting its price can lose revenue per visitor. The primary test
decides whether a change is better; each guardrail then asks the opposite question of its own metric,
"is the candidate worse?", with Welch's test on the per-unit sums both arms reported, pooled over the
hypothesis's runs (heavy tails: the domain reports winsorized sums). A change the primary test accepts is
rejected when any guardrail shows harm at its `alpha`: worse at all, or with a `margin`, worse by more
than that share of the incumbent's mean (a non-inferiority test). Guardrails only ever turn accepts into
rejects, so the primary false-accept rate still holds; the check is one test at the final look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ledgerlab.core import stats
from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.judge import Judgement
from ledgerlab.core.protocols import Guardrail
from ledgerlab.errors import CampaignError

# (candidate's run metrics, incumbent's run metrics); an empty side ({}) for a run of one arm only
Arms = tuple[Mapping[str, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail's verdict on a hypothesis: the improvement (positive = better) and the p of harm."""

    name: str
    effect: float | None  # candidate − incumbent in the better direction, per unit
    effect_rel: float | None  # effect relative to the incumbent's mean
    ci_low: float | None  # the two-sided 1 − 2·alpha interval, the one-sided test's dual
    ci_high: float | None
    p_worse: float | None  # one-sided p of H0 "the candidate is not worse"
    alpha: float
    harmed: bool
    test: str
    n_candidate: int
    n_incumbent: int
    margin: float = 0.0  # tolerated worsening, a share of the incumbent's mean

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for VerdictReached.details)."""
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. `revenue_per_visitor -4.1% (p of harm 0.003, alpha 0.05)`."""
        rel = "n/a" if self.effect_rel is None else f"{self.effect_rel:+.1%}"
        p = "n/a" if self.p_worse is None else f"{self.p_worse:.3g}"
        margin = f", margin {self.margin:.1%}" if self.margin else ""
        return f"{self.name} {rel} (p of harm {p}, alpha {self.alpha:g}{margin})"


def guardrails_of(domain: object) -> tuple[Guardrail, ...]:
    """A domain's optional `guardrails`, checked; CampaignError naming the fix when they are malformed."""
    found = as_domain(domain).guardrails
    if isinstance(found, Guardrail):
        found = (found,)
    if not isinstance(found, (tuple, list)) or not all(isinstance(g, Guardrail) for g in found):
        raise CampaignError(f"domain {getattr(domain, 'name', domain)!r}: `guardrails` must be a tuple of "
                            f"ledgerlab.core.protocols.Guardrail, got {found!r}")
    return tuple(found)


def check(guardrail: Guardrail, runs: Sequence[Arms]) -> GuardrailCheck | None:
    """Test `guardrail` on a hypothesis's finished runs; None when no run reported its sums."""
    cand, inc = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    keys = (guardrail.n_key, guardrail.sum_key, guardrail.sumsq_key)
    for arm_metrics in runs:
        for side, metrics in zip((cand, inc), arm_metrics):
            if all(_number(metrics.get(k)) for k in keys):  # a run that did not report the sums is skipped
                for i, key in enumerate(keys):
                    side[i] += float(metrics[key])
    if cand[0] < 1 or inc[0] < 1 or cand[0] + inc[0] < 3:
        return None
    base = inc[1] / inc[0]
    # p of H0 "improvement ≤ −margin·|base|"; its complement tests "not worse by more than the margin".
    tolerated = -guardrail.margin * abs(base)
    arms = (tuple(cand), tuple(inc))
    result = stats.sums_test(*arms, guardrail.direction, tolerated)  # type: ignore[arg-type]
    low, high = result.interval(1.0 - 2.0 * guardrail.alpha)
    if result.p_value is not None:
        p_worse: float | None = 1.0 - result.p_value
    elif result.se is None and result.effect is not None and math.isfinite(result.effect):
        # No variance in either arm (a deterministic metric): a worsening beyond the margin is certain.
        p_worse = 0.0 if result.effect < tolerated else 1.0
    else:
        p_worse = None
    return GuardrailCheck(
        name=guardrail.name, effect=result.effect, effect_rel=result.effect / abs(base) if base else None,
        ci_low=low, ci_high=high, p_worse=p_worse, alpha=guardrail.alpha,
        harmed=p_worse is not None and p_worse < guardrail.alpha, test=result.test,
        n_candidate=result.n_candidate, n_incumbent=result.n_incumbent, margin=guardrail.margin,
    )


def check_all(guardrails: Sequence[Guardrail], runs: Sequence[Arms]) -> list[GuardrailCheck]:
    """Every guardrail that has data, in declaration order."""
    return [c for g in guardrails if (c := check(g, runs)) is not None]


def veto(j: Judgement, checks: Sequence[GuardrailCheck]) -> Judgement:
    """`j`, or a reject in its place when it accepts and a guardrail shows harm (the primary numbers stay)."""
    harmed = [c for c in checks if c.harmed]
    if j.decision != "accept" or not harmed:
        return j
    why = "; ".join(c.describe() for c in harmed)
    reason = f"{j.reason}; but a guardrail shows harm: {why}"
    return j.model_copy(update={"decision": "reject", "reason": reason})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
