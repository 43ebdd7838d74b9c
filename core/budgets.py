"""Budgets: which limit, if any, forbids starting more work (checked before each run and each proposal)."""

from __future__ import annotations

from datetime import datetime

from ledgerlab.core.config import Budgets
from ledgerlab.core.state import CampaignState


def run_limit(budgets: Budgets, state: CampaignState, now: datetime) -> str | None:
    """The budget that forbids starting another run, or None."""
    if budgets.max_runs and state.n_runs >= budgets.max_runs:
        return "max_runs"
    if budgets.time_limit and state.elapsed(now) >= budgets.time_limit:
        return "time_limit"
    if budgets.max_units and state.units >= budgets.max_units:
        return "max_units"
    return None


def runs_left(budgets: Budgets, state: CampaignState) -> int | None:
    """How many more runs `max_runs` allows (None: no limit); an A/B/n window takes at most this many."""
    return None if not budgets.max_runs else max(0, budgets.max_runs - state.n_runs)


def proposal_limit(budgets: Budgets, state: CampaignState, now: datetime, pending: int = 0) -> str | None:
    """The budget that forbids asking for another hypothesis, or None."""
    if budgets.max_hypotheses is not None and len(state.hypotheses) + pending >= budgets.max_hypotheses:
        return "max_hypotheses"
    if budgets.max_cost_usd is not None and _cost_would_exceed(budgets.max_cost_usd, state, pending):
        return "max_cost"
    return run_limit(budgets, state, now)


def _cost_would_exceed(limit: float, state: CampaignState, pending: int) -> bool:
    """Stop *before* exceeding: each proposal (this one and those in flight) may cost two of the dearest calls
    so far (an answer and its repair round-trip); before any call has a price, one proposal at a time."""
    if limit == 0:
        return True
    if not state.llm_calls:
        return pending > 0
    per_proposal = 2 * state.max_call_cost
    return state.llm_cost_usd + (pending + 1) * per_proposal > limit


def describe(reason: str, budgets: Budgets, state: CampaignState, now: datetime) -> str:
    """A one-line explanation of a stop reason, with the numbers."""
    return {
        "max_runs": f"{state.n_runs} runs of {budgets.max_runs} allowed",
        "time_limit": f"{state.elapsed(now):.0f} s of {budgets.time_limit:.0f} s allowed" if budgets.time_limit
        else "",
        "max_units": f"{state.units:.0f} units of {budgets.max_units} allowed",
        "max_hypotheses": f"{len(state.hypotheses)} hypotheses of {budgets.max_hypotheses} allowed",
        "max_cost": f"${state.llm_cost_usd:.4f} spent of ${budgets.max_cost_usd} allowed",
        "proposer_exhausted": "the proposers have nothing left to try on the incumbent",
    }.get(reason, reason)
