"""The level each hypothesis is tested at, across the campaign's stream of hypotheses.

"fixed": every hypothesis gets `alpha`, which bounds each hypothesis's false-accept probability (and the
expected number of false accepts at alpha × hypotheses). The share of accepts that are false then grows with
the campaign's length, since the useless changes keep coming and the useful ones run out.

"fdr" (the default of concurrent designs): ADDIS (Tian & Ramdas 2019, "ADDIS: an adaptive discarding
algorithm for online FDR control with conservative nulls"), which controls the false discovery rate at
`alpha` over the stream, at any length. Each decided hypothesis is read by its p-value: above τ
(`fdr_tau`) it is discarded, at most λ (`fdr_lambda`) it is a candidate, and only those in between cost
wealth. With W0 = `fdr_w0`·alpha, C the costs since the start and C_j the costs since the j-th accept,
the next hypothesis gets

    α = min(λ, (τ − λ)·[W0·γ_{1+C} + (alpha − W0)·γ_{1+C_1} + alpha·Σ_{j≥2} γ_{1+C_j}])

Whatever spends its wealth before the first accept sums to at most (τ − λ)·W0 ≤ alpha: a rule that
controls the FDR must accept nothing, with probability 1 − alpha, on a market where nothing works. The
decay γ is flat over the first `fdr_flat` costs and falls as j^−s (s = `fdr_decay`, 2 if unset)
afterwards, so the first real change, anywhere among the first pass of ideas, meets a level of a few
10⁻³ rather than the 10⁻⁴ the usual decay has reached by then (bench/decisions.py measured both).

"lord": LORD++ (Ramdas, Yang, Wainwright & Jordan 2017, "Online control of the false discovery rate with
decaying memory"), ADDIS without discarding or candidates: with initial wealth W0 = alpha/2 and accepted
hypotheses at indices τ1 < τ2 < ..., hypothesis t gets

    α_t = γ_t·W0 + (alpha − W0)·γ_{t−τ1} + alpha·Σ_{j≥2, τj<t} γ_{t−τj}

with γ the standard sequence γ_j = 0.0772·log(max(j, 2)) / (j·exp(√log j)) (Javanmard & Montanari 2018;
the constant of the onlineFDR package, Σ γ_j ≈ 1).

Hypotheses run concurrently (several candidates per window, several workers), so both are asynchronous
(Zrnic, Jiang, Ramdas & Jordan 2021, "Asynchronous online testing of multiple hypotheses"): a hypothesis's
level uses only what was decided before it started. LORD gives each tested hypothesis its own index t;
ADDIS counts every hypothesis then in flight as a cost, whatever its p-value turns out to be. So the levels
of a stream of useless changes never sum to more than one-at-a-time testing would spend (core/state.py
records what each hypothesis saw: `alpha_index`, `accepts_known`, `verdicts_known`, `in_flight_at_start`).

The guarantees assume independent p-values (hypotheses that share the incumbent's runs are positively
dependent) and, for ADDIS, take the p-value a sequential test ended on as the hypothesis's p-value (a
futility stop ends on its first look's) — bench/decisions.py measures the result on the marketing market.

Imported discoveries (core/discoveries.py) form a stream of their own, by default tested by alpha-investing
(`investing_level`), which bounds the expected number of false accepts rather than their share: an online
FDR procedure cannot give its first test more than its target, and imports, mostly real, need more.

Each level is rebuilt from the events only: the campaign state is a fold over its events.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING

from ledgerlab.errors import ConfigError

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


def decay(j: int, exponent: float | None, flat: int = 0) -> float:
    """The j-th term (j ≥ 1) of the decay sequence: LORD++'s standard one, or ∝ min(1, flat/j)^s, s = `exponent`."""
    if j < 1:
        return 0.0
    if exponent is None and not flat:
        return gamma(j)
    s = 2.0 if exponent is None else exponent
    return min(1.0, max(flat, 1) / j) ** s / _norm(s, max(flat, 1))


@functools.cache
def _norm(s: float, flat: int) -> float:
    from scipy.special import zeta  # only the "fdr" policy needs it

    # Σ_j min(1, F/j)^s = F + F^s·ζ(s, F + 1) (Hurwitz zeta)
    return float(flat + flat**s * zeta(s, flat + 1))


# What the stream shows a hypothesis when it starts, one letter per earlier tested hypothesis (stream order):
ACCEPTED = "A"  # decided: accepted (a discovery; also a candidate or a cost, by its p-value, below)
CANDIDATE = "c"  # decided: p ≤ λ
COST = "k"  # decided with λ < p ≤ τ, or still in flight (its p-value unknown: counted as the worst case)
DISCARDED = "d"  # decided: p > τ (a conservative null: it costs nothing)


def history_letter(p_value: float | None, accepted: bool, lam: float, tau: float) -> str:
    """The letter of a decided hypothesis (see ACCEPTED…DISCARDED)."""
    if accepted:
        return ACCEPTED
    if p_value is None or lam < p_value <= tau:
        return COST
    return CANDIDATE if p_value <= lam else DISCARDED


def history(entries: Sequence[tuple[int, float | None, bool | None]], lam: float, tau: float) -> str:
    """The letters of the stream ahead of a hypothesis, from (index, p-value, accepted) in stream order."""
    return "".join(COST if accepted is None else history_letter(p, accepted, lam, tau)
                   for _, p, accepted in entries)


def addis_alpha(settings: JudgeSettings, history: str) -> float:
    """ADDIS level of the hypothesis that starts after `history` (one letter per earlier tested hypothesis)."""
    alpha, lam, tau = campaign_alpha(settings), settings.fdr_lambda, settings.fdr_tau
    w0 = settings.fdr_w0 * alpha
    # One pass from the end: the costs after each accept, and after the start.
    costs, costs_after = 0, []
    for letter in reversed(history):
        if letter == COST:
            costs += 1
        elif letter == ACCEPTED:
            costs_after.append(costs)
    costs_after.reverse()  # in stream order: the first accept's first
    s, flat = settings.fdr_decay, settings.fdr_flat
    level = w0 * decay(1 + costs, s, flat)
    for j, since in enumerate(costs_after):
        level += (alpha - w0 if j == 0 else alpha) * decay(1 + since, s, flat)
    return min(lam, (tau - lam) * level)


def next_alpha(settings: JudgeSettings, index: int, accepted: Sequence[int], history: str = "") -> float:
    """Level of the hypothesis at `index`; `accepted` holds the indices of accepts decided before it started."""
    if settings.alpha_policy == "fdr":
        return addis_alpha(settings, history)
    if settings.alpha_policy == "lord":
        return lord_alpha(campaign_alpha(settings), index, accepted)
    # "fixed", or unset on settings built without judge_settings (which resolves it): a level per hypothesis
    return campaign_alpha(settings)


def in_imports_stream(settings: JudgeSettings, imports: Container[str], hypothesis_id: str) -> bool:
    """Whether the hypothesis's level comes from the imports' stream: an import, where imports have one."""
    return settings.import_alpha > 0 and hypothesis_id in imports


def imports_policy(settings: JudgeSettings) -> str | None:
    """The imports' stream's policy: its own, else (campaigns before v5) the campaign's."""
    return settings.import_alpha_policy or settings.alpha_policy


def import_level(settings: JudgeSettings, stream: Sequence[tuple[int, float | None, bool | None]]) -> float:
    """Level of an imported discovery, in the imports' own stream (`import_alpha` > 0).

    `stream`: the earlier imports tested, as (alpha index, p-value, accepted) in stream order
    (CampaignState.stream_before). The stream's target is `import_alpha` and its decay's flat stretch
    `import_flat`; LORD numbers its tests 1, 2, 3… on its own. The campaign's own ideas keep their stream
    (their levels read only their own history and accepts), so a campaign that imports holds its false
    discovery rate under alpha + import_alpha: the false share of a union is at most the sum of the shares.
    """
    s = settings.model_copy(update={"alpha": settings.import_alpha, "fdr_flat": settings.import_flat,
                                        "alpha_policy": imports_policy(settings)})
    if s.alpha_policy == "fdr":
        return addis_alpha(s, history(stream, s.fdr_lambda, s.fdr_tau))
    if s.alpha_policy == "lord":
        accepted = [t for t, (_, _, ok) in enumerate(stream, start=1) if ok]
        return lord_alpha(campaign_alpha(s), len(stream) + 1, accepted)
    return campaign_alpha(s)


def investing_level(settings: JudgeSettings, spent: Sequence[tuple[float, bool | None]]) -> float:
    """Alpha-investing level of the next import, given the earlier imports' (level, accepted or None while in
    flight) in stream order (Foster & Stine 2008, "α-investing: a procedure for sequential control of expected
    false discoveries").

    The stream starts with wealth W0 = `import_wealth`. An accepted import earns ω = `import_alpha`; any other
    pays α/(1 − α) for its level α, and one still in flight is counted as paid (the worst case, so concurrent
    imports never stake the same wealth twice). The next import stakes the share b = `import_bet` of the
    wealth W: α = b·W/(1 + b·W), whose price b·W never takes the wealth below zero. With W0 = ω·η this keeps
    the imports' marginal FDR, E[V]/(E[R] + η), at most ω whatever the imports are (independent tests): a
    stream of useless imports, however long, gets at most W0/(1 − ω) of them accepted on average, each failure
    shrinking the next level, while a stream of real ones keeps earning its levels back.
    """
    q = settings.import_alpha
    wealth = settings.import_wealth
    for level, accepted in spent:
        wealth += q if accepted else -level / (1.0 - level)
    stake = settings.import_bet * max(wealth, 0.0)
    # Each failure keeps 1 − import_bet of the wealth, so it never reaches 0; the floor only stops a float
    # underflow (after a thousand failures) from handing the judge a level of 0.
    return max(stake / (1.0 + stake), 1e-300)


def import_futility(settings: JudgeSettings, level: float) -> float:
    """An import's first-look futility bound, given its level in the imports' stream.

    Under alpha-investing the level tracks the stream's wealth: `import_futility_trust` at the first import's
    level or above (imports have been paying off), falling linearly to `import_futility_p` as the level falls
    toward 0 (imports keep failing, so runs on them are likely wasted). Other policies, and imports tested in
    the campaign's own stream (`import_alpha = 0`): `import_futility_p`. Futility only ever drops a hypothesis,
    so no bound changes what a false accept costs.
    """
    low = settings.import_futility_p
    if imports_policy(settings) != "investing" or settings.import_alpha <= 0:
        return low
    share = min(1.0, level / investing_level(settings, ()))
    return low + (settings.import_futility_trust - low) * share


def campaign_alpha(settings: JudgeSettings) -> float:
    """The campaign's alpha: judge_settings resolves it (from the domain) before anything is judged."""
    if settings.alpha is None:
        raise ConfigError("the judge's alpha is not set: resolve the settings with judge_settings first")
    return settings.alpha
