"""What `ledgerlab status` reports about a campaign, computed once; cli/campaign.py renders it as text or JSON.

    report = status_report(state, now=utc_now())      # plain JSON values: dicts, lists, str, numbers, None

Every number comes from core/effects.py; `improvement.method` and `accepted[].confirmed.method` name how each
effect was computed (the holdback, paired on matched seeds, Welch, pooled same-window runs, or the sum of
confirmed links), because which one applies changes as a campaign goes on; `improvement.reason` says why it
is not measured (yet, while the campaign can still run), and `accepted[].unconfirmed_reason` why a change has
no confirmed effect. `accepted[].selected` is the effect the judge selected the change at:
the winner's curse makes it optimistic, hence its name. Non-finite numbers become None.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledgerlab.core.effects import (
    Effect,
    confirmed,
    finished,
    fresh_runs,
    improvement,
    mean,
    not_measured_reason,
    unconfirmed_reason,
    values,
)

if TYPE_CHECKING:
    from ledgerlab.core.state import CampaignState, HypothesisRecord

CI_LEVEL = 0.95  # the level of every interval in the report (core/effects.py)
STOPPED = "stopped_unexpectedly"  # the ledger says running, but no runner holds the folder
RESUME_HINT = "ledgerlab resume"


def status_report(state: CampaignState, *, now: datetime, run_started_at: Mapping[str, datetime] | None = None,
                  unpriced_calls: int = 0, runner_alive: bool | None = None) -> dict[str, Any]:
    """The campaign at a glance (what `ledgerlab status` shows), as plain JSON values.

    `run_started_at`: when each run's latest attempt started (for how long the unfinished ones have run);
    `unpriced_calls`: LLM calls whose price is unknown (not in the spend). Both come from the events, not
    the fold, so the caller that reads the events passes them. `runner_alive`: whether a runner holds the
    project folder's lock (core/runner_lock.py; None: unknown, trust the ledger). A campaign the ledger says
    is running with no runner alive crashed or was killed: its status is "stopped_unexpectedly", at its last
    event, and its unfinished runs are interrupted.
    """
    started = state.started
    assert started is not None
    status: str = state.status  # the fold's, or STOPPED where the ledger and the folder's lock disagree
    if status == "running" and runner_alive is False:
        status = STOPPED
    metric = state.metric
    hypotheses = Counter(h.status for h in state.hypotheses.values())
    runs = Counter(r.status for r in state.runs.values())
    failed = {k: v for k, v in sorted(runs.items()) if k not in ("finished", "running")}
    report = {
        "campaign_id": state.campaign_id,
        "domain": started.domain,
        "metric": metric.model_dump(mode="json"),
        "guardrails": [g.model_dump(mode="json") for g in state.guardrails or ()],
        "status": status,
        "stopped_at": state.last_at.isoformat() if status == STOPPED and state.last_at else None,
        "resume_hint": RESUME_HINT if status in (STOPPED, "paused") else None,
        "runner_alive": runner_alive,
        "finish_reason": state.finish_reason,
        "pause_reason": state.pause_reason if state.status == "paused" else None,
        "seed": started.seed,
        "first_seed": started.seed_base,
        **_incumbent_and_baseline(state),
        "accepted": [_accepted(state, h) for h in state.hypotheses.values()
                     if h.status == "accepted" and h.verdict is not None],
        "hypotheses": {
            "tried": len(state.hypotheses), "accepted": hypotheses["accepted"], "rejected": hypotheses["rejected"],
            "rejected_by_guardrail": sum(1 for h in state.hypotheses.values()
                                         if h.verdict and h.verdict.details.get("guardrail_veto")),
            "patch_rejected": hypotheses["patch_rejected"], "open": hypotheses["testing"] + hypotheses["proposed"],
        },
        "runs": {"finished": runs["finished"], "failed": sum(failed.values()), "failed_by_status": failed,
                 "unfinished": runs["running"]},
        "budgets_used": {"hypotheses": len(state.hypotheses), "runs": state.n_runs, "units": state.units,
                         "active_seconds": state.elapsed(now), "cost_usd": state.llm_cost_usd},
        "budget_limits_at_start": {k: v for k, v in started.budgets.items() if v is not None},
        "spend": {"llm_cost_usd": state.llm_cost_usd, "llm_calls": state.llm_calls,
                  "unpriced_calls": unpriced_calls},
        "active_seconds": state.elapsed(now),
        "last_event_seconds_ago": (now - state.last_at).total_seconds() if state.last_at else 0.0,
        "running_now": _running_now(state, now, run_started_at or {}, interrupted=status != "running"),
        "kind": started.kind,
        "transfer": _transfer_rows(state) if started.kind == "transfer" else None,
    }
    return _finite(report)


def _transfer_rows(state: CampaignState) -> list[dict[str, Any]]:
    """A transfer campaign's table (core/transfer.py), one dict per row, as `ledgerlab status` prints it."""
    from dataclasses import asdict

    from ledgerlab.core.transfer import table

    return [asdict(row) for row in table(state)]


# ---------------------------------------------------------------------------------------- effects


def _incumbent_and_baseline(state: CampaignState) -> dict[str, Any]:
    assert state.started is not None
    baseline_id, incumbent_id = state.started.baseline_candidate_id, state.incumbent_id
    inc_fresh, base_runs = fresh_runs(state, incumbent_id), finished(state, baseline_id)
    value, basis, n = mean(values(inc_fresh)), "after_selection", len(inc_fresh)
    if value is None and finished(state, incumbent_id):  # no run after selection yet: the selecting ones
        selecting = finished(state, incumbent_id)
        value, basis, n = mean(values(selecting)), "selection_runs_optimistic", len(selecting)
    origin = state.candidate_parent.get(incumbent_id)
    number = state.hypotheses[origin[1]].number if origin and origin[1] in state.hypotheses else None
    if incumbent_id == baseline_id:
        gain: dict[str, Any] = {"status": "baseline_is_incumbent", **_effect(None), "reason": None}
    else:
        got = improvement(state, inc_fresh, base_runs)
        gain = {"status": "measured" if got else "not_measured", **_effect(got),
                "reason": None if got else not_measured_reason(state)}
    return {
        "incumbent": {"candidate_id": incumbent_id, "is_baseline": incumbent_id == baseline_id,
                      "hypothesis_number": number, "value": value, "runs": n if value is not None else 0,
                      "basis": basis if value is not None else None},
        "baseline": {"candidate_id": baseline_id, "value": mean(values(base_runs)),
                     "runs": len(base_runs)},
        "improvement": gain,
    }


def _effect(got: Effect | None) -> dict[str, Any]:
    """An effect as JSON: the interval's level is None when there were too few runs for one."""
    if got is None:
        return {"effect": None, "ci_low": None, "ci_high": None, "ci_level": None, "method": None}
    has_ci = got.low is not None and got.high is not None
    out = {"effect": got.effect, "ci_low": got.low, "ci_high": got.high, "ci_level": CI_LEVEL if has_ci else None,
           "method": got.method}
    if got.relative is not None:  # measured as a share of the baseline (the holdback)
        out.update(relative=got.relative, relative_ci_low=got.relative_low, relative_ci_high=got.relative_high)
    return out


def _accepted(state: CampaignState, h: HypothesisRecord) -> dict[str, Any]:
    v = h.verdict
    assert v is not None
    check = confirmed(state, h)
    return {
        "number": h.number, "hypothesis_id": h.hypothesis_id, "candidate_id": h.candidate_id,
        "rationale": h.rationale,
        "selected": {"effect": v.effect, "ci_low": v.ci_low, "ci_high": v.ci_high, "test": v.test,
                     "p_value": v.p_value},
        "confirmed": _effect(check) if check else None,
        "unconfirmed_reason": None if check else unconfirmed_reason(state, h),
    }


def _running_now(state: CampaignState, now: datetime, run_started_at: Mapping[str, datetime], *,
                 interrupted: bool) -> dict[str, Any]:
    runs = []
    for r in state.runs.values():
        if r.status != "running":
            continue
        since = run_started_at.get(r.run_id)
        record = state.hypotheses.get(r.hypothesis_id or "")
        runs.append({"run_id": r.run_id, "hypothesis_number": record.number if record else None, "role": r.role,
                     "candidate_id": r.candidate_id, "seed": r.seed,
                     "running_seconds": (now - since).total_seconds() if since else None})
    # A paused, finished or stopped campaign's unfinished runs are not running: resume re-runs them.
    return {"interrupted": interrupted, "runs": runs}


def _finite(value: Any) -> Any:
    """`value` with nan and ±inf replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
