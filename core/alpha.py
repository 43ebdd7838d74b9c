"""The level each hypothesis is tested at, across the campaign's stream of hypotheses.

"fixed": every hypothesis gets `alpha`, which bounds each hypothesis's false-accept probability (and the
expected number of false accepts at alpha × hypotheses).

"lord": LORD++ (Ramdas, Yang, Wainwright & Jordan 2017, "Online control of the false discovery rate with
decaying memory"), which controls the false discovery rate at `alpha` over the stream: with initial wealth
W0 = alpha/2 and rejection (accept) times τ1 < τ2 < ..., hypothesis t gets

    α_t = γ_t·W0 + (alpha − W0)·γ_{t−τ1} + alpha·Σ_{j≥2, τj<t} γ_{t−τj}

with γ the standard sequence γ_j = 0.0772·log(max(j, 2)) / (j·exp(√log j)) (Javanmard & Montanari 2018;
the constant of the onlineFDR package, Σ γ_j ≈ 1). Before the first accept the levels sum to at most W0;
every accept earns new wealth. The guarantee assumes independent p-values (hypotheses that share the
incumbent's runs are positively dependent; LORD++ is then not formally covered).

Each level is rebuilt from the past verdicts only: the campaign state is a fold over its events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledgerlab.core.judge import JudgeSettings

GAMMA_CONSTANT = 0.07720838


def gamma(j: int) -> float:
    """The j-th term (j ≥ 1) of the LORD++ decay sequence."""
    if j < 1:
        return 0.0
    return GAMMA_CONSTANT * math.log(max(j, 2)) / (j * math.exp(math.sqrt(math.log(j))))


def lord_alpha(alpha: float, accepted: Sequence[bool], w0: float | None = None) -> float:
    """LORD++ level for the next hypothesis, given which earlier hypotheses were accepted."""
    w0 = alpha / 2.0 if w0 is None else w0
    t = len(accepted) + 1  # 1-based index of the hypothesis being tested
    taus = [i + 1 for i, a in enumerate(accepted) if a]
    level = gamma(t) * w0
    if taus:
        level += (alpha - w0) * gamma(t - taus[0])
        level += alpha * sum(gamma(t - tau) for tau in taus[1:])
    return level


def next_alpha(settings: JudgeSettings, past: Sequence[tuple[float, bool]]) -> float:
    """Level for the next hypothesis; `past` holds (alpha_spent, accepted) of earlier verdicts in order."""
    if settings.alpha_policy == "fixed":
        return settings.alpha
    return lord_alpha(settings.alpha, [accepted for _, accepted in past])
