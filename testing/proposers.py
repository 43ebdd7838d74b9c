"""A scripted proposer: the hypotheses a test wants, in order, with no model and no randomness."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import Knob, Proposal, ProposalContext
from ledgerlab.testing.toy_domain import KNOBS

Step = dict[str, Any] | Callable[[ProposalContext, Any], Proposal | None] | Exception | None


class ScriptedProposer:
    """Proposes step k of a script for the k-th hypothesis in the ledger (so a restart resumes the script).

    A step is a dict of knob values (written into the incumbent's files with `knobs`, the toy domain's by
    default), a callable `(context, sink) -> Proposal | None`, an exception to raise, or None (nothing left).
    With `consume=True` it pops steps instead (concurrent agents must not see the same step twice).
    """

    name = "scripted"

    def __init__(self, script: list[Step], consume: bool = False, knobs: Sequence[Knob] = KNOBS) -> None:
        self.script, self.consume, self.knobs = list(script), consume, tuple(knobs)

    def propose(self, context: ProposalContext, sink: Any = None) -> Proposal | None:
        k = 0 if self.consume else len(context.history)
        if k >= len(self.script):
            return None
        step = self.script.pop(0) if self.consume else self.script[k]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(context, sink)
        if step is None:
            return None
        files = dict(context.incumbent_files)
        for name, value in step.items():
            files = write_knob(files, next(k for k in self.knobs if k.name == name), value)
        return Proposal(rationale=f"set {step}", files=files, changes=step)
