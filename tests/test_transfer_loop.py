"""The transfer loop in-process on an A/B domain: a window void by chance is run again, once, on new traffic."""

from __future__ import annotations

from pathlib import Path

from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.planner import MAX_VOID_ATTEMPTS
from ledgerlab.core.state import CampaignState, fold
from ledgerlab.core.transfer import fresh_seeds, start_events
from ledgerlab.core.transfer_loop import Transfer, needed
from ledgerlab.storage import events as ev
from ledgerlab.storage.memory import InMemoryLedger
from tests.test_campaign import campaign
from tests.window_domain import WindowDomain

SEEDS = 3


def _source(tmp_path: Path) -> CampaignState:
    """A finished A/B campaign that accepted X = 5 (true rate 5.6% over the baseline's 5.0%)."""
    state = campaign(InMemoryLedger(), tmp_path / "source", [{"X": 5.0}, {"MODE": "fancy"}],
                     domain=WindowDomain(visitors=60_000)).run()
    assert [h.status for h in state.hypotheses.values()][0] == "accepted"
    return state


def _transfer(tmp_path: Path, source: CampaignState, domain: WindowDomain,
              store: InMemoryLedger | None = None) -> tuple[InMemoryLedger, CampaignState]:
    store = store or InMemoryLedger()
    config = CampaignConfig(domain="toy")
    start = [] if store.read("t-1") else \
        start_events(source, domain, "window", config, {}, fresh_seeds(source, SEEDS), "process")
    job = Transfer(store, domain, config, LocalExecutor(domain), tmp_path / "runs", "t-1", "window", start=start)
    return store, job.run()


def _by_seed(state: CampaignState) -> dict[tuple[str, int], list[tuple[str, bool, int]]]:
    out: dict[tuple[str, int], list[tuple[str, bool, int]]] = {}
    for run in state.runs.values():
        out.setdefault((run.candidate_id, run.seed), []).append((run.status, run.retryable, run.attempt))
    return out


def test_a_void_window_is_run_again_and_every_arm_keeps_its_pairs(tmp_path: Path) -> None:
    domain = WindowDomain(visitors=60_000, void_attempts=1)  # every window mismatches on its first attempt
    _, state = _transfer(tmp_path, _source(tmp_path), domain)
    assert state.status == "finished"
    runs = _by_seed(state)
    assert len(runs) == SEEDS  # X = 5 on its own is the final incumbent too: one candidate serves both arms
    assert all(attempts == [("invalid", True, 1), ("finished", False, 2)] for attempts in runs.values())
    verdicts = [h.verdict for h in state.hypotheses.values()]
    assert all(v is not None and v.test != "run-failed" and v.n_candidate == SEEDS for v in verdicts)
    assert sorted({c.attempt for c in domain.calls}) == [1, 2]  # the retry asked the domain for new traffic


def test_a_window_void_on_its_retry_too_fails_its_arm_without_looping(tmp_path: Path) -> None:
    domain = WindowDomain(visitors=60_000, void_attempts=MAX_VOID_ATTEMPTS)
    _, state = _transfer(tmp_path, _source(tmp_path), domain)
    assert state.status == "finished"
    assert all(len(attempts) == MAX_VOID_ATTEMPTS for attempts in _by_seed(state).values())
    assert all(h.verdict is not None and h.verdict.test == "run-failed" for h in state.hypotheses.values())


def test_a_transfer_killed_after_a_void_run_retries_it_on_resume(tmp_path: Path) -> None:
    source = _source(tmp_path)
    domain = WindowDomain(visitors=60_000, void_attempts=1)
    full, _ = _transfer(tmp_path / "first", source, domain)
    rows = [row.event() for row in full.read("t-1")]
    first_void = next(i for i, e in enumerate(rows) if isinstance(e, ev.RunFailed))
    cut = rows[:first_void + 1]  # killed just after the void run's RunFailed was committed
    store = InMemoryLedger()
    store.append("t-1", cut, expected_version=0)
    due = [s for s in needed(fold("t-1", store.read("t-1"))) if s.attempt == 2]
    assert len(due) == 1  # the void run's retry, its second attempt on that seed
    _, state = _transfer(tmp_path / "second", source, WindowDomain(visitors=60_000, void_attempts=1), store)
    assert state.status == "finished"
    assert all(attempts[-1][0] == "finished" for attempts in _by_seed(state).values())
    assert all(h.verdict is not None and h.verdict.n_candidate == SEEDS for h in state.hypotheses.values())
