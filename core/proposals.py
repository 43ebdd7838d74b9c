"""From a proposer's answer to ledger events: the diff, a rebase onto a newer incumbent, the candidate check.

The campaign loop owns the proposers' threads and the ledger; these functions only decide what a proposal
becomes (HypothesisProposed, PatchRejected, CandidateCreated), from the campaign state and the files the
ledger rebuilds (`files_of`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ledgerlab.core.patches import apply_diff, candidate_id, make_diff
from ledgerlab.core.protocols import Domain, HistoryItem, Proposal, ProposalContext
from ledgerlab.core.state import CampaignState, HypothesisRecord
from ledgerlab.errors import InvalidCandidate, PatchError, ProposalRejected
from ledgerlab.storage import events as ev

FilesOf = Callable[[str], dict[str, str]]  # candidate id -> its files


def context(state: CampaignState, domain: Domain, domain_name: str, agent: str, seed: int,
            files_of: FilesOf) -> ProposalContext:
    """What a proposer is given: the domain, the incumbent's files and the campaign's history."""
    incumbent = state.incumbent_id
    return ProposalContext(
        domain_name=domain_name, description=domain.description, metric=state.metric,
        knobs=tuple(domain.knobs()), incumbent_id=incumbent, incumbent_files=files_of(incumbent),
        history=tuple(history_item(h) for h in state.hypotheses.values()), agent=agent, seed=seed,
    )


def new_hypothesis_id() -> str:
    """A fresh hypothesis id."""
    return f"h-{uuid.uuid4().hex[:10]}"


def rejected(agent: str, proposer: str, parent: str, exc: ProposalRejected) -> tuple[ev.Event, ...]:
    """A proposal its proposer could not turn into a patch: recorded, and rejected at once."""
    hypothesis_id = new_hypothesis_id()
    return (
        ev.HypothesisProposed(hypothesis_id=hypothesis_id, agent=agent, proposer=proposer,
                              rationale=exc.rationale or "(no rationale)", parent_candidate_id=parent,
                              diff=exc.diff, changes=exc.changes),
        ev.PatchRejected(hypothesis_id=hypothesis_id, reason=exc.reason),
    )


def proposed(agent: str, proposer: str, parent: str, proposal: Proposal, incumbent: str,
             files_of: FilesOf) -> tuple[ev.Event, ...]:
    """The hypothesis a proposal makes: its diff against `parent`, rebased onto `incumbent` when it moved."""
    rationale, files = proposal.rationale.strip() or "(no rationale)", dict(proposal.files)
    try:
        diff = make_diff(files_of(parent), files)
    except PatchError as exc:
        return rejected(agent, proposer, parent, ProposalRejected(str(exc), rationale, "", proposal.changes))
    if parent != incumbent and diff:
        parent, diff, rationale = rebase(parent, incumbent, diff, rationale, files_of)
    return (ev.HypothesisProposed(
        hypothesis_id=new_hypothesis_id(), agent=agent, proposer=proposer, rationale=rationale,
        parent_candidate_id=parent, diff=diff, changes=dict(proposal.changes),
    ),)


def rebase(parent: str, incumbent: str, diff: str, rationale: str, files_of: FilesOf) -> tuple[str, str, str]:
    """Move a proposal made on an older incumbent onto the current one, when its diff still applies."""
    try:
        files = apply_diff(files_of(incumbent), diff)
    except PatchError:
        return parent, diff, rationale  # materialising will reject it as stale
    return incumbent, make_diff(files_of(incumbent), files), f"{rationale} (rebased onto {incumbent[:12]})"


def check_candidate(record: HypothesisRecord, state: CampaignState, domain: Domain,
                    files_of: FilesOf) -> tuple[str | None, dict[str, str] | None]:
    """(None, the candidate's files), or (why the patch is rejected, None)."""
    parent = record.parent_candidate_id
    if parent != state.incumbent_id:
        return f"stale: built on {parent[:12]}, but the incumbent is now {state.incumbent_id[:12]}", None
    if not record.diff.strip():
        return "no-op: the patch changes nothing", None
    try:
        files = apply_diff(files_of(parent), record.diff)
    except PatchError as exc:
        return f"patch does not apply: {exc}", None
    cid = candidate_id(files)
    assert state.started is not None  # proposals come after CampaignStarted
    if cid == state.started.baseline_candidate_id or (cid in state.candidate_parent and not _retest(record, cid, state)):
        return f"duplicate: candidate {cid[:12]} was already tested", None
    try:
        domain.validate(files)
    except InvalidCandidate as exc:
        return f"invalid candidate: {exc}", None
    except Exception as exc:  # noqa: BLE001 - a bug in a domain's validate() rejects, never crashes
        return f"invalid candidate: validate() raised {type(exc).__name__}: {exc}", None
    return None, files


def _retest(record: HypothesisRecord, cid: str, state: CampaignState) -> bool:
    """Whether an import may test a candidate this campaign rejected before, on fresh seeds (core/planner.py).

    Another campaign's accept is new evidence: the earlier rejection was often a look-1 futility stop. Only
    imports, only a rejected candidate (not one in test, accepted or the incumbent).
    """
    earlier = state.hypotheses.get(state.candidate_parent[cid][1])
    return record.hypothesis_id in state.imports and earlier is not None and earlier.status == "rejected" \
        and cid != state.incumbent_id


def history_item(h: HypothesisRecord) -> HistoryItem:
    """A hypothesis as proposers see it."""
    verdict = h.verdict
    return HistoryItem(
        hypothesis_id=h.hypothesis_id, agent=h.agent, rationale=h.rationale,
        parent_candidate_id=h.parent_candidate_id, candidate_id=h.candidate_id, diff=h.diff,
        changes=h.changes, status=h.status, reason=h.reason,
        effect=verdict.effect if verdict else None, p_value=verdict.p_value if verdict else None,
    )
