"""A candidate's files rebuilt from the ledger alone: the baseline plus the chain of accepted-or-tested diffs."""

from __future__ import annotations

from ledgerlab.core.patches import apply_diff, candidate_id
from ledgerlab.core.state import CampaignState
from ledgerlab.errors import CampaignError, IntegrityError


def candidate_files(state: CampaignState, cid: str, cache: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The files of candidate `cid`, rebuilt by applying its hypotheses' diffs from the baseline."""
    cache = {} if cache is None else cache
    if state.started is None:
        raise CampaignError("the campaign has no CampaignStarted event")
    chain: list[str] = []
    node = cid
    while node not in cache and node != state.started.baseline_candidate_id:
        if node not in state.candidate_parent:
            raise CampaignError(f"unknown candidate {cid[:12]} in campaign {state.campaign_id}")
        chain.append(node)
        node = state.candidate_parent[node][0]
    files = dict(cache.get(node) or state.started.baseline_files)
    cache.setdefault(node, files)
    for child in reversed(chain):
        hypothesis = state.hypotheses[state.candidate_parent[child][1]]
        files = apply_diff(files, hypothesis.diff)
        if candidate_id(files) != child:
            raise IntegrityError(f"rebuilding candidate {child[:12]} from the ledger gave different files")
        cache[child] = files
    return dict(files)
