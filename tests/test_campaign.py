"""The campaign loop on the in-test toy domain: verdicts, events, budgets, failures, pause and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.judge import JudgeSettings
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import Proposal, ProposalContext
from ledgerlab.core.state import CampaignState
from ledgerlab.errors import CampaignError, ProposalRejected, ProviderDownError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.storage.memory import InMemoryLedger
from ledgerlab.storage.verify import verify_ledger
from ledgerlab.testing import KNOBS, ScriptedProposer, Step, ToyDomain


def campaign(store: Any, tmp_path: Path, script: list[Step], domain: ToyDomain | None = None,
             **config: Any) -> Campaign:
    domain = domain or ToyDomain()
    campaign_id, consume = config.pop("campaign_id", None), config.pop("consume", False)
    data = {"domain": "toy", "budgets": {"max_hypotheses": 50}, **config}
    agents = [Agent("agent-0", ScriptedProposer(script, consume))]
    return Campaign(store, domain, CampaignConfig(**data), agents=agents,
                    executor=LocalExecutor(domain, workers=data.get("executor", {}).get("workers", 1)),
                    runs_dir=tmp_path / "runs", campaign_id=campaign_id)


def types(store: Any, campaign_id: str) -> list[str]:
    return [row.type for row in store.read(campaign_id)]


def test_a_real_improvement_is_accepted_and_a_null_change_rejected(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 5.0}, {"Y": 3}, {"MODE": "fancy"}]).run()
    assert state.status == "finished" and state.finish_reason == "proposer_exhausted"
    decided = [h.status for h in state.hypotheses.values()]
    assert decided[0] == "accepted"  # loss 0.8 -> 0.05: ~4 noise SDs per paired run
    assert decided[1] == "patch_rejected"  # Y = 3 is already the value: a no-op
    assert decided[2] == "rejected"  # MODE does not change the loss
    first = next(iter(state.hypotheses.values()))
    assert state.incumbent_id == first.candidate_id
    assert first.verdict is not None and first.verdict.effect is not None and first.verdict.effect > 0.5
    assert first.verdict.p_value is not None and first.verdict.p_value < 0.01


def test_each_step_is_an_event_in_order(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 5.0}]).run()
    seen = types(store, state.campaign_id)
    assert seen[0] == "CampaignStarted" and seen[-2:] == ["CampaignFinished", "CheckpointSigned"]
    order = [t for t in seen if t in ("HypothesisProposed", "CandidateCreated", "VerdictReached", "IncumbentChanged")]
    assert order == ["HypothesisProposed", "CandidateCreated", "VerdictReached", "IncumbentChanged"]
    assert seen.count("RunStarted") == seen.count("RunFinished") + seen.count("RunFailed")
    # The new incumbent is measured on fresh seeds (confirmation) before the campaign ends.
    fresh = state.seed_base[state.incumbent_id]
    confirm = [r for r in state.runs.values() if r.candidate_id == state.incumbent_id and r.role == "incumbent"]
    assert confirm and all(r.seed >= fresh for r in confirm)
    candidate_seeds = {r.seed for r in state.runs.values() if r.role == "candidate"}
    assert max(candidate_seeds) < fresh


def test_invalid_duplicate_and_unusable_proposals_become_patch_rejected(tmp_path: Path) -> None:
    def outside(context: ProposalContext, sink: Any) -> Proposal:
        return Proposal(rationale="add a file", files={**context.incumbent_files, "evil.py": "x"})

    def rejected(context: ProposalContext, sink: Any) -> Proposal:
        raise ProposalRejected("could not parse the answer", rationale="an idea", diff="garbage")

    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 11.0}, {"Y": 4}, {"Y": 4}, outside, rejected]).run()
    reasons = [h.reason for h in state.hypotheses.values()]
    assert reasons[0].startswith("invalid candidate: X must be")
    assert reasons[2].startswith("duplicate") or reasons[2].startswith("no-op")
    assert "evil.py" in reasons[3]
    assert reasons[4] == "could not parse the answer"
    assert [h.status for h in state.hypotheses.values()].count("patch_rejected") == 4


def test_a_crashing_candidate_is_rejected_and_the_loop_goes_on(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"MODE": "broken"}, {"X": 5.0}]).run()
    first, second = state.hypotheses.values()
    assert first.status == "rejected" and first.verdict.test == "run-failed"  # type: ignore[union-attr]
    assert "crashed" in first.reason and "boom" in first.reason
    assert second.status == "accepted"
    failed = [r for r in state.runs.values() if r.status == "crashed"]
    assert len(failed) == 1


def test_an_incumbent_that_keeps_failing_pauses_the_campaign(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 5.0}], domain=ToyDomain(fail_incumbent=True)).run()
    assert state.status == "paused"
    assert "failed 3 times" in state.pause_reason


def test_budgets_stop_before_starting_work_and_say_why(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": x} for x in (3.0, 4.0, 5.0, 7.0)],
                     budgets={"max_hypotheses": 2}).run()
    assert state.finish_reason == "max_hypotheses" and len(state.hypotheses) == 2
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": x} for x in (3.0, 4.0, 5.0, 7.0)],  # no holdback to reserve runs for
                     budgets={"max_hypotheses": None, "max_runs": 4}, judge={"holdback_max_pairs": 0}).run()
    assert state.finish_reason == "max_runs" and state.n_runs == 4
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 5.0}], domain=ToyDomain(sleep_s=0.3),
                     budgets={"max_hypotheses": None, "time_limit": "0.5s"}).run()
    assert state.finish_reason == "time_limit"
    assert state.n_runs <= 3  # checked before each start: 0.3 s runs under a 0.5 s limit


def test_the_dollar_budget_stops_before_it_is_exceeded(tmp_path: Path) -> None:
    def paid(context: ProposalContext, sink: Any) -> Proposal:
        sink.emit(ev.LLMCallCompleted(call_id="x", model="m", cost_usd=0.4, latency_s=0.1, ok=True))
        files = write_knob(dict(context.incumbent_files), KNOBS[0], 3.0 + len(context.history))
        return Proposal(rationale="paid idea", files=files)

    store = InMemoryLedger()
    state = campaign(store, tmp_path, [paid] * 10, budgets={"max_hypotheses": None, "max_cost_usd": 1.3}).run()
    assert state.finish_reason == "max_cost"
    # 0.4 + 2 × 0.4 (a proposal may need a repair call) fits in 1.3; 0.8 + 0.8 does not.
    assert state.llm_cost_usd <= 1.3 and state.llm_calls == 2


def test_a_raising_proposer_pauses_after_three_failures(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [RuntimeError("bug")]).run()
    assert state.status == "paused"
    reason = state.pause_reason
    assert "failed 3 times" in reason and "RuntimeError: bug" in reason


def test_a_provider_that_stays_down_pauses_with_its_message(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [ProviderDownError("the LLM provider is unreachable")]).run()
    assert state.status == "paused"
    assert "unreachable" in state.pause_reason


def test_greedy_judge_uses_one_run_per_hypothesis(tmp_path: Path) -> None:
    store = InMemoryLedger()
    state = campaign(store, tmp_path, [{"X": 5.0}, {"MODE": "fancy"}], judge={"kind": "greedy"}).run()
    for h in state.hypotheses.values():
        assert h.verdict is not None and h.verdict.test == "greedy"
        assert len([r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id and r.role == "candidate"]) == 1


class Crash(Exception):
    """Stands in for a kill at an exact point: nothing after the n-th event is written."""


def _crash_after(camp: Campaign, n: int) -> None:
    count = {"n": 0}

    def hook(_row: ev.StoredEvent) -> None:
        count["n"] += 1
        if count["n"] == n:
            raise Crash()
    camp.on_event = hook


SCRIPT: list[Step] = [{"X": 5.0}, {"MODE": "fancy"}, {"Y": 5}]


def _decisions(state: CampaignState) -> list[str]:
    return [h.status for h in state.hypotheses.values()]


def test_resume_after_a_crash_at_every_step_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    reference = campaign(InMemoryLedger(), tmp_path, list(SCRIPT)).run()
    total = reference.version  # the last two: CampaignFinished, then the checkpoint that signs it
    for n in range(1, total - 1):
        store = InMemoryLedger()
        script = list(SCRIPT)
        first = campaign(store, tmp_path, script, campaign_id="c-1")
        _crash_after(first, n)
        with pytest.raises(Crash):
            first.run()
        # The proposer lives on (it is not part of the ledger); a new process gets the remaining script.
        state = campaign(store, tmp_path, script, campaign_id="c-1").run()
        assert state.status == "finished", n
        assert _decisions(state) == _decisions(reference), n
        rows = store.read("c-1")
        verdicts = [r.event().hypothesis_id for r in rows if r.type == "VerdictReached"]  # type: ignore[attr-defined]
        assert len(verdicts) == len(set(verdicts)), n
        finished = [r.event().run_id for r in rows if r.type in ("RunFinished", "RunFailed")]  # type: ignore[attr-defined]
        assert len(finished) == len(set(finished)), n
        assert all(r.status != "running" for r in state.runs.values()), n


def test_stop_request_pauses_cleanly_and_resume_completes(tmp_path: Path) -> None:
    store = DuckDBLedger(tmp_path / "ledger.duckdb")
    first = campaign(store, tmp_path, list(SCRIPT), domain=ToyDomain(sleep_s=0.05), campaign_id="c-2")

    def stop_on_second_run(row: ev.StoredEvent) -> None:
        if row.type == "RunStarted" and sum(1 for r in first.state.runs.values()) == 2:
            first.request_stop("interrupted (SIGINT)")
    first.on_event = stop_on_second_run
    state = first.run()
    assert state.status == "paused"
    assert types(store, "c-2")[-2:] == ["CampaignPaused", "CheckpointSigned"]
    running = [r.run_id for r in state.runs.values() if r.status == "running"]
    second = campaign(store, tmp_path, list(SCRIPT), domain=ToyDomain(sleep_s=0.05), campaign_id="c-2")
    state = second.run()
    assert state.status == "finished"
    resumed = next(r.event() for r in store.read("c-2") if r.type == "CampaignResumed")
    assert sorted(resumed.reruns) == sorted(running)  # type: ignore[attr-defined]
    for run_id in running:
        assert state.runs[run_id].attempt == 2 and state.runs[run_id].status == "finished"
    store.close()
    assert verify_ledger(tmp_path / "ledger.duckdb").ok


def test_a_finished_campaign_cannot_be_resumed(tmp_path: Path) -> None:
    store = InMemoryLedger()
    campaign(store, tmp_path, [], campaign_id="c-3").run()
    with pytest.raises(CampaignError, match="already finished"):
        campaign(store, tmp_path, [], campaign_id="c-3").run()


def test_parallel_workers_run_hypotheses_at_once_and_reject_stale_ones(tmp_path: Path) -> None:
    store = InMemoryLedger()
    domain = ToyDomain(sleep_s=0.05)
    state = campaign(store, tmp_path, [{"X": 5.0}, {"X": 5.5}, {"MODE": "fancy"}, {"Y": 4}], domain=domain,
                     executor={"workers": 3}, consume=True).run()
    assert state.status == "finished"
    for h in state.hypotheses.values():
        if h.status == "accepted":
            continue
        assert h.status in ("rejected", "patch_rejected")
    accepted = [h for h in state.hypotheses.values() if h.status == "accepted"]
    assert accepted
    # No verdict ever compared against an incumbent other than the one current when it was decided.
    for h in state.hypotheses.values():
        if h.verdict is not None and h.verdict.test not in ("stale", "run-failed"):
            assert h.parent_candidate_id in {state.started.baseline_candidate_id, *state.incumbent_parent}  # type: ignore[union-attr]


def test_agents_share_an_accepted_discovery_and_the_lineage_is_queryable(tmp_path: Path) -> None:
    from ledgerlab.storage.ledger import read_only_connection

    domain = ToyDomain(sleep_s=0.02)
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 8}, executor={"workers": 2})
    agents = [Agent("finder", ScriptedProposer([{"X": 5.0}, {"Y": 5}, {"X": 5.5}], consume=True)),
              Agent("tinkerer", ScriptedProposer([{"MODE": "fancy"}, {"Y": 4}, {"X": 4.0}, {"Y": 2}],
                                                 consume=True))]
    with DuckDBLedger(tmp_path / "ledger.duckdb") as store:
        state = Campaign(store, domain, config, agents=agents, executor=LocalExecutor(domain, 2),
                         runs_dir=tmp_path / "runs").run()
    assert {h.agent for h in state.hypotheses.values()} == {"finder", "tinkerer"}
    changes = [row for row in state.hypotheses.values() if row.status == "accepted"]
    assert changes, "the X = 5 discovery should be accepted"
    # Every proposal recorded after an accept builds on the incumbent of that moment (rebased if needed),
    # or is rejected as stale: none is judged against an older incumbent.
    with DuckDBLedger(tmp_path / "ledger.duckdb") as store:
        rows = [row.event() for row in store.read(state.campaign_id)]
    current = state.started.baseline_candidate_id  # type: ignore[union-attr]
    for e in rows:
        if isinstance(e, ev.IncumbentChanged):
            current = e.candidate_id
        elif isinstance(e, ev.HypothesisProposed):
            h = state.hypotheses[e.hypothesis_id]
            assert e.parent_candidate_id == current or "stale" in h.reason
    with read_only_connection(tmp_path / "ledger.duckdb") as con:
        rows = con.execute("select agent, built_on_hypothesis_id from hypotheses where built_on_hypothesis_id "
                           "is not null").fetchall()
    assert rows and {r[1] for r in rows} <= {h.hypothesis_id for h in changes}


def test_resume_reruns_every_run_in_flight_with_parallel_workers(tmp_path: Path) -> None:
    store = InMemoryLedger()
    domain = ToyDomain(sleep_s=0.1)
    first = campaign(store, tmp_path, list(SCRIPT), domain=domain, executor={"workers": 3}, campaign_id="c-4",
                     consume=True)

    def stop_when_busy(row: ev.StoredEvent) -> None:
        if sum(r.status == "running" for r in first.state.runs.values()) >= 2:
            first.request_stop("interrupted (SIGINT)")
    first.on_event = stop_when_busy
    state = first.run()
    running = sorted(r.run_id for r in state.runs.values() if r.status == "running")
    assert state.status == "paused" and len(running) >= 2
    state = campaign(store, tmp_path, list(SCRIPT), domain=ToyDomain(sleep_s=0.1), executor={"workers": 3},
                     campaign_id="c-4", consume=True).run()
    resumed = next(r.event() for r in store.read("c-4") if r.type == "CampaignResumed")
    assert sorted(resumed.reruns) == running  # type: ignore[attr-defined]
    assert all(state.runs[run_id].attempt == 2 and state.runs[run_id].status == "finished" for run_id in running)
    ends = [r.event().run_id for r in store.read("c-4") if r.type in ("RunFinished", "RunFailed")]  # type: ignore[attr-defined]
    assert len(ends) == len(set(ends))  # each run has one result: none lost, none duplicated


def test_hypotheses_on_one_incumbent_rotate_over_its_seeds(tmp_path: Path) -> None:
    script: list[Step] = [{"X": round(0.1 * k, 1)} for k in range(18)]  # all worse than the baseline's X = 2
    state = campaign(InMemoryLedger(), tmp_path, script).run()
    window = JudgeSettings().seed_window
    assert window == 16 and all(h.status == "rejected" for h in state.hypotheses.values())
    for k, record in enumerate(state.hypotheses.values()):
        seeds = [r.seed for r in state.runs.values()
                 if r.hypothesis_id == record.hypothesis_id and r.role == "candidate"]
        assert seeds == [(k + i) % window for i in range(len(seeds))]  # replicate i on seed (k + i) mod 16
    incumbent = [r.seed for r in state.runs.values() if r.role == "incumbent"]
    candidate = {r.seed for r in state.runs.values() if r.role == "candidate"}
    # The incumbent gathers one run per seed of its window, each shared by the hypotheses that land there.
    assert len(incumbent) == len(set(incumbent)) and candidate <= set(incumbent) <= set(range(window))
    assert len(incumbent) > JudgeSettings().baseline_runs("independent")


def test_greedy_compares_every_change_with_the_same_incumbent_run(tmp_path: Path) -> None:
    script: list[Step] = [{"X": round(0.1 * k, 1)} for k in range(5)]
    state = campaign(InMemoryLedger(), tmp_path, script, judge={"kind": "greedy"}).run()
    assert {r.seed for r in state.runs.values()} == {0}  # autoresearch: one baseline run, one run per change
