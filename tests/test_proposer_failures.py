"""A proposer's exceptions: each one is a ProposerFailed in the ledger, with its traceback, shown by `log`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.agents import MAX_PROPOSER_FAILURES
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.errors import ProviderDownError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.storage.memory import InMemoryLedger
from ledgerlab.storage.verify import verify_ledger
from ledgerlab.testing import ScriptedProposer, Step, ToyDomain


def _campaign(store: Any, tmp_path: Path, script: list[Step]) -> Campaign:
    domain = ToyDomain()
    # consume: each call takes the next step, so a failing step is not asked again
    agents = [Agent("agent-0", ScriptedProposer(script, consume=True))]
    return Campaign(store, domain, CampaignConfig(domain="toy", budgets={"max_hypotheses": 1}), agents=agents,
                    executor=LocalExecutor(domain), runs_dir=tmp_path / "runs")


def _failures(store: Any, campaign_id: str) -> list[ev.ProposerFailed]:
    return [e for e in (row.event() for row in store.read(campaign_id)) if isinstance(e, ev.ProposerFailed)]


def test_the_first_and_second_exceptions_are_events_and_the_campaign_goes_on(tmp_path: Path) -> None:
    store = InMemoryLedger()
    camp = _campaign(store, tmp_path, [RuntimeError("first bug"), KeyError("second"), {"X": 5.0}])
    state = camp.run()
    assert state.status == "finished" and len(state.hypotheses) == 1  # two failures do not pause it
    first, second = _failures(store, camp.campaign_id)
    assert (first.error, first.consecutive) == ("RuntimeError: first bug", 1)
    assert (second.error, second.consecutive) == ("KeyError: 'second'", 2)
    assert first.agent == "agent-0" and first.proposer == "scripted"
    assert first.parent_candidate_id == state.started.baseline_candidate_id  # type: ignore[union-attr]
    # the traceback's tail: the proposer's own frame and the error
    assert "Traceback (most recent call last)" in first.traceback and "in propose" in first.traceback
    assert first.traceback.rstrip().endswith("RuntimeError: first bug")
    types = [row.type for row in store.read(camp.campaign_id)]
    assert types.index("ProposerFailed") < types.index("HypothesisProposed")


def test_the_failures_that_pause_the_campaign_are_recorded_before_the_pause(tmp_path: Path) -> None:
    store = InMemoryLedger()
    camp = _campaign(store, tmp_path, [RuntimeError(f"bug {i}") for i in range(MAX_PROPOSER_FAILURES)])
    state = camp.run()
    assert state.status == "paused" and f"failed {MAX_PROPOSER_FAILURES} times" in state.pause_reason  # type: ignore[operator]
    failures = _failures(store, camp.campaign_id)
    assert [f.consecutive for f in failures] == list(range(1, MAX_PROPOSER_FAILURES + 1))
    assert [f.error for f in failures] == [f"RuntimeError: bug {i}" for i in range(MAX_PROPOSER_FAILURES)]
    types = [row.type for row in store.read(camp.campaign_id) if row.type != "CheckpointSigned"]
    assert types[-2:] == ["ProposerFailed", "CampaignPaused"]


def test_a_provider_outage_is_recorded_too(tmp_path: Path) -> None:
    store = InMemoryLedger()
    camp = _campaign(store, tmp_path, [ProviderDownError("the LLM provider is unreachable")])
    assert camp.run().status == "paused"
    (failure,) = _failures(store, camp.campaign_id)
    assert failure.error == "ProviderDownError: the LLM provider is unreachable"


def test_a_long_traceback_keeps_its_tail() -> None:
    from ledgerlab.core.agents import failure_event

    try:
        try:
            raise KeyError("k" * 2 * ev.TRACEBACK_TAIL)  # a cause longer than the tail kept
        except KeyError as cause:
            raise ValueError("at the bottom\nsecond line") from cause
    except ValueError as exc:
        event = failure_event(Agent("a", ScriptedProposer([])), "parent", exc, 1)
    assert len(event.traceback) == ev.TRACEBACK_TAIL and event.traceback.rstrip().endswith("second line")
    assert event.error == "ValueError: at the bottom"  # one line
    assert ev.decode(*ev.encode(event)) == event


def test_log_shows_the_failure_and_verify_passes(tmp_path: Path) -> None:
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        _campaign(store, tmp_path, [RuntimeError("bug in the proposer"), {"X": 5.0}]).run()
    assert verify_ledger(tmp_path / ".ledgerlab" / "ledger.duckdb").ok
    result = CliRunner().invoke(app, ["log", "--dir", str(tmp_path), "-t", "ProposerFailed"])
    assert result.exit_code == 0, result.output
    assert "ProposerFailed" in result.output
    assert "agent agent-0 (scripted) failed, 1 in a row: RuntimeError: bug in the proposer" in result.output
