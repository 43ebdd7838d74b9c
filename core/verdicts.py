"""What a hypothesis's final judgement becomes in the ledger, and the judgements the loop reaches itself.

A verdict is a `VerdictReached` event; an accept also appends `IncumbentChanged` in the same transaction, so
the ledger never holds an accepted hypothesis whose candidate did not become the incumbent. Stale hypotheses
(the incumbent moved while they were tested) and failed candidate runs are rejected without the judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ledgerlab.core.guardrails import GuardrailCheck
from ledgerlab.core.judge import Judgement
from ledgerlab.core.state import HypothesisRecord
from ledgerlab.storage import events as ev


def verdict_events(record: HypothesisRecord, j: Judgement, *, alpha: float, judge: str, seeds: Iterable[int],
                   checks: Sequence[GuardrailCheck] = (), vetoed: bool = False) -> list[ev.Event]:
    """The events of a final judgement: its verdict, and on accept the incumbent change (seeds: all used)."""
    details: dict[str, Any] = {"alpha": alpha, "ci_level": j.ci_level, "judge": judge}
    if checks:
        details["guardrails"] = [c.as_dict() for c in checks]
    if vetoed:
        details["guardrail_veto"] = True
    verdict = ev.VerdictReached(
        hypothesis_id=record.hypothesis_id, decision=j.decision, reason=j.reason,
        test=j.test, statistic=j.statistic, p_value=j.p_value, effect=j.effect, ci_low=j.ci_low,
        ci_high=j.ci_high, n_candidate=j.n_candidate, n_incumbent=j.n_incumbent,
        alpha_spent=j.alpha_spent, looks=max(j.look, 1), details=details,
    )
    if j.decision != "accept":
        return [verdict]
    assert record.candidate_id is not None
    # The new incumbent's confirmation runs start past every seed used so far: none of them selected it.
    changed = ev.IncumbentChanged(
        candidate_id=record.candidate_id, hypothesis_id=record.hypothesis_id,
        previous_candidate_id=record.parent_candidate_id, seed_base=max(seeds, default=-1) + 1,
    )
    return [verdict, changed]


def stale(record: HypothesisRecord, incumbent: str) -> Judgement:
    """A reject for a hypothesis tested against an incumbent that is no longer current."""
    return _reject("stale", 0, f"stale: the incumbent changed to {incumbent[:12]} while this was tested "
                               f"against {record.parent_candidate_id[:12]}")


def run_failed(run: Any, n: int) -> Judgement:
    """A reject for a hypothesis whose candidate run crashed, timed out, diverged or was invalid (n: its runs)."""
    again = f" (attempt {run.attempt}: void on new traffic too)" if run.retryable else ""
    return _reject("run-failed", n, f"candidate run {run.run_id} {run.status}{again}: {run.error[:300]}")


def _reject(test: str, n_candidate: int, reason: str) -> Judgement:
    return Judgement(
        decision="reject", need=0, test=test, statistic=None, p_value=None, effect=None, ci_low=None,
        ci_high=None, n_candidate=n_candidate, n_incumbent=0, alpha_spent=0.0, look=0, reason=reason,
    )
