"""What a finished or failed run becomes in the ledger: RunFinished or RunFailed, one per run of a window."""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence

from ledgerlab.core.protocols import RunResult
from ledgerlab.kinds import FailStatus
from ledgerlab.storage import events as ev


def run_events(run_ids: Sequence[str], result: RunResult) -> list[ev.Event]:
    """The events of one executed run: its own, then those of the window's further candidates (`run_ids[1:]`)."""
    others = (run_event(run_id, arm_result(result, run_id)) for run_id in run_ids[1:])
    return [run_event(run_ids[0], result), *others]


def run_event(run_id: str, result: RunResult) -> ev.Event:
    """RunFinished, or RunFailed (a finished run whose metric is not a finite number diverged)."""
    value = result.value
    if result.status == "finished" and value is not None and math.isfinite(value):
        return ev.RunFinished(
            run_id=run_id, value=float(value), metrics=dict(result.metrics),
            control_value=result.control_value, control_metrics=dict(result.control_metrics),
            duration_s=result.duration_s, log_path=result.log_path,
        )
    status: FailStatus = "diverged" if result.status == "finished" else result.status
    error = f"metric is {value}" if result.status == "finished" else result.error or result.status
    return ev.RunFailed(
        run_id=run_id, status=status, error=error,
        log_tail=result.log_tail[-4000:], duration_s=result.duration_s, log_path=result.log_path,
        retryable=result.retryable and result.status != "finished", units=_units(result),
    )


def _units(result: RunResult) -> float:
    """The budget units a run reports it used (a void window's visitors were still shown a page), else 0."""
    units = result.metrics.get("units")
    if isinstance(units, bool) or not isinstance(units, (int, float)):  # True is no count of visitors
        return 0.0
    return float(units) if math.isfinite(units) and units > 0 else 0.0


def traceback_tail(exc: BaseException, frames: int = 5) -> str:
    """The last `frames` entries of `exc`'s formatted traceback (the innermost frames and the error): a log tail."""
    return "".join(traceback.format_exception(exc)[-frames:])


def arm_result(result: RunResult, run_id: str) -> RunResult:
    """A further arm's result; one the domain did not report shares the run's failure (or is a crash)."""
    if run_id in result.arms:
        return result.arms[run_id]
    if result.status != "finished":
        return result.model_copy(update={"arms": {}})
    return RunResult(status="crashed", error=f"the domain reported no result for arm {run_id}",
                     duration_s=result.duration_s, log_path=result.log_path)
