"""A small, hand-checked stream of events over two campaigns, shared by the storage and CLI tests.

`MIN` is a minimize campaign (val_bpb), still running, with an interrupted-and-rerun run, an accepted, a
patch-rejected, a rejected, a testing and a proposed hypothesis. `MAX` is a finished maximize campaign.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledgerlab.storage import events as ev

MIN, MAX = "camp-min", "camp-max"


def _run(run_id: str, cand: str, seed: int, value: float | None, *, hyp: str | None = None,
         role: str = "candidate", attempt: int = 1) -> list[ev.Event]:
    started = ev.RunStarted(run_id=run_id, candidate_id=cand, hypothesis_id=hyp, role=role, seed=seed,
                            attempt=attempt, worker="w1")
    if value is None:
        return [started]
    return [started, ev.RunFinished(run_id=run_id, value=value, metrics={"loss": value}, duration_s=1.5)]


def _started(domain: str, name: str, direction: str, baseline: str) -> ev.CampaignStarted:
    # A judge without guardrails or a holdback; the rest of its settings are JudgeSettings' defaults.
    return ev.CampaignStarted(domain=domain, metric={"name": name, "direction": direction},
                              baseline_files={"a.txt": "x"}, baseline_candidate_id=baseline,
                              judge={"guardrails": False, "holdback_max_runs": 0, "holdback_max_pairs": 0})


def _hyp(hid: str, parent: str) -> ev.HypothesisProposed:
    return ev.HypothesisProposed(hypothesis_id=hid, proposer="knobs", rationale=f"try {hid}",
                                 parent_candidate_id=parent, diff=f"--- {hid}", changes={"LR": 0.1})


def _verdict(hid: str, decision: str, reason: str = "") -> ev.VerdictReached:
    return ev.VerdictReached(hypothesis_id=hid, decision=decision, reason=reason, test="welch",
                             statistic=2.0, p_value=0.01, effect=0.05, ci_low=0.01, ci_high=0.09,
                             n_candidate=2, n_incumbent=2, alpha_spent=0.05)


def min_campaign() -> list[ev.Event]:
    """The minimize campaign's events in order."""
    return [
        _started("ml_training", "val_bpb", "minimize", "cand-base"),
        *_run("r-b1", "cand-base", 1, 1.00, role="incumbent"),
        *_run("r-b2", "cand-base", 2, 1.02, role="incumbent"),
        _hyp("h1", "cand-base"),
        ev.LLMCallCompleted(call_id="llm-1", model="gpt-x", prompt_tokens=100, completion_tokens=20,
                            cost_usd=0.01, latency_s=1.2, ok=True),
        ev.CandidateCreated(candidate_id="cand-1", hypothesis_id="h1", parent_candidate_id="cand-base"),
        *_run("r-1a", "cand-1", 1, None, hyp="h1"),  # interrupted ...
        ev.CampaignPaused(reason="signal"),
        ev.CampaignResumed(reruns=["r-1a"]),
        *_run("r-1a", "cand-1", 1, 0.95, hyp="h1", attempt=2),  # ... and re-run with the same id
        *_run("r-1b", "cand-1", 2, 0.97, hyp="h1"),
        _verdict("h1", "accept"),
        ev.IncumbentChanged(candidate_id="cand-1", hypothesis_id="h1", previous_candidate_id="cand-base"),
        *_run("r-1c", "cand-1", 3, 0.90, role="incumbent"),
        *_run("r-1d", "cand-1", 4, 0.92, role="incumbent"),
        _hyp("h2", "cand-1"),
        ev.PatchRejected(hypothesis_id="h2", reason="patch does not apply"),
        _hyp("h3", "cand-1"),
        ev.CandidateCreated(candidate_id="cand-3", hypothesis_id="h3", parent_candidate_id="cand-1"),
        *_run("r-3a", "cand-3", 1, None, hyp="h3"),
        ev.RunFailed(run_id="r-3a", status="crashed", error="CUDA out of memory"),
        _verdict("h3", "reject", "futility"),
        _hyp("h4", "cand-1"),
        ev.CandidateCreated(candidate_id="cand-4", hypothesis_id="h4", parent_candidate_id="cand-1"),
        *_run("r-4a", "cand-4", 1, None, hyp="h4"),  # still running
        _hyp("h5", "cand-1"),
    ]


def max_campaign() -> list[ev.Event]:
    """The maximize campaign's events in order."""
    return [
        _started("marketing", "conversion", "maximize", "cand-A"),
        *_run("r-a1", "cand-A", 1, 0.10, role="incumbent"),
        _hyp("hx", "cand-A"),
        ev.CandidateCreated(candidate_id="cand-B", hypothesis_id="hx", parent_candidate_id="cand-A"),
        *_run("r-x1", "cand-B", 1, 0.12, hyp="hx"),
        _verdict("hx", "accept"),
        ev.IncumbentChanged(candidate_id="cand-B", hypothesis_id="hx", previous_candidate_id="cand-A"),
        *_run("r-x2", "cand-B", 2, 0.13, role="incumbent"),
        ev.CampaignFinished(reason="max_hypotheses"),
    ]


def fixture_stream() -> list[tuple[str, ev.Event]]:
    """Both campaigns interleaved: (campaign_id, event) in append order."""
    mins, maxs = min_campaign(), max_campaign()
    stream: list[tuple[str, ev.Event]] = []
    for i in range(max(len(mins), len(maxs))):
        stream += [(MIN, mins[i])] if i < len(mins) else []
        stream += [(MAX, maxs[i])] if i < len(maxs) else []
    return stream


def append_stream(store: object, stream: Iterable[tuple[str, ev.Event]]) -> int:
    """Append each event as its own transaction; returns how many were appended."""
    count = 0
    for campaign_id, event in stream:
        store.append(campaign_id, [event], expected_version=store.version(campaign_id))  # type: ignore[attr-defined]
        count += 1
    return count
