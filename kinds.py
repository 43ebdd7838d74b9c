"""The words the events and the code that reads them share, as `Literal` types.

storage/events.py's payloads declare their fields with these; the fold (core/state.py) and everything that
compares a run's role or status, a hypothesis's or a campaign's status with a string uses the same aliases, so
`make lint` (mypy, strict equality) catches a misspelt word that a plain string comparison would silently get
wrong.
"""

from __future__ import annotations

from typing import Literal

RunRole = Literal["candidate", "incumbent", "holdback"]
"""candidate: a hypothesis's candidate; incumbent: the incumbent (or the baseline) as a replicate or a
confirmation run; holdback: a pair of the incumbent and the baseline on seeds no judge reads (core/holdback.py)."""

FailStatus = Literal["crashed", "timeout", "diverged", "invalid"]
"""How a run ended without a value (RunFailed)."""

RunOutcome = Literal["finished", "crashed", "timeout", "diverged", "invalid"]
"""How an executed run ended (core/protocols.py's RunResult): finished, or a FailStatus."""

RunStatus = Literal["running", "finished", "crashed", "timeout", "diverged", "invalid"]
"""Where a run stands in the fold: running until its RunFinished (finished) or RunFailed (a FailStatus)."""

HypothesisStatus = Literal["proposed", "patch_rejected", "testing", "accepted", "rejected"]
CampaignStatus = Literal["new", "running", "paused", "finished"]
VerdictDecision = Literal["accept", "reject"]
Decision = Literal["accept", "reject", "more"]
"""A judge's answer: a verdict, or more runs first."""

Design = Literal["independent", "concurrent"]
"""independent: each run on its own seed; concurrent: the arms share one window of traffic (A/B)."""
