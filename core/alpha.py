"""The level each hypothesis is tested at, across the campaign's stream of hypotheses.

"fixed": every hypothesis gets `alpha`, which bounds each hypothesis's false-accept probability (and the
expected number of false accepts at alpha × hypotheses). The share of accepts that are false then grows with
the campaign's length, since the useless changes keep coming and the useful ones run out.

"lord": LORD++ (Ramdas, Yang, Wainwright & Jordan 2017, "Online control of the false discovery rate with
decaying memory"), which controls the false discovery rate at `alpha` over the stream, at any length: with
initial wealth W0 = alpha/2 and accepted hypotheses at indices τ1 < τ2 < ..., hypothesis t gets

    α_t = γ_t·W0 + (alpha − W0)·γ_{t−τ1} + alpha·Σ_{j≥2, τj<t} γ_{t−τj}

with γ the standard sequence γ_j = 0.0772·log(max(j, 2)) / (j·exp(√log j)) (Javanmard & Montanari 2018;
the constant of the onlineFDR package, Σ γ_j ≈ 1). Before the first accept the levels sum to at most W0;
every accept earns new wealth.

Hypotheses run concurrently (several candidates per window, several workers), so this is the asynchronous
form (Zrnic, Jiang, Ramdas & Jordan 2021, "Asynchronous online testing of multiple hypotheses"): each tested
hypothesis holds its own index t, and its level uses only the accepts decided before it started. Two
hypotheses in flight together never share an index, so the levels of a stream of useless changes sum to
no more than one-at-a-time testing would spend (core/state.py assigns the indices; `alpha_index`).

The guarantee assumes independent p-values (hypotheses that share the incumbent's runs are positively
dependent; LORD++ is then not formally covered) — bench/decisions.py measures it on the marketing market.

Each level is rebuilt from the events only: the campaign state is a fold over its events.
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


def lord_alpha(alpha: float, index: int, accepted: Sequence[int], w0: float | None = None) -> float:
    """LORD++ level of the hypothesis at `index` (1-based), given the indices of the accepts known to it."""
    w0 = alpha / 2.0 if w0 is None else w0
    taus = sorted(tau for tau in accepted if tau < index)
    level = gamma(index) * w0
    if taus:
        level += (alpha - w0) * gamma(index - taus[0])
        level += alpha * sum(gamma(index - tau) for tau in taus[1:])
    return level


def next_alpha(settings: JudgeSettings, index: int, accepted: Sequence[int]) -> float:
    """Level of the hypothesis at `index`; `accepted` holds the indices of accepts decided before it started."""
    if settings.alpha_policy == "fixed":
        return settings.alpha
    return lord_alpha(settings.alpha, index, accepted)
