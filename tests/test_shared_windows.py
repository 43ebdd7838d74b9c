"""A/B/n: several candidates tested in one run against one shared control arm (planner, loop, resume, views)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ledgerlab.core import planner
from ledgerlab.core.judge import Evidence, JudgeSettings, make_judge
from ledgerlab.core.outcomes import run_events
from ledgerlab.core.protocols import MetricSpec, RunResult
from ledgerlab.core.state import CampaignState
from ledgerlab.domains.marketing.domain import allocation
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger, read_only_connection
from ledgerlab.storage.memory import InMemoryLedger
from tests.test_campaign import Crash, Step, _crash_after, campaign
from tests.window_domain import WindowDomain

SCRIPT: list[Step] = [{"X": 5.0}, {"Y": 4}, {"MODE": "fancy"}, {"X": 3.0}, {"Y": 6}, {"X": 2.5}, {"X": 1.0}]


def spec(candidate: str, seed: int = 0, control: str | None = "inc", role: str = "candidate") -> planner.RunSpec:
    return planner.RunSpec(candidate, role, seed, f"h-{candidate}", control)


def windows_of(state: CampaignState) -> dict[str, list]:
    """Candidate runs by the window they shared (runs alone in theirs are left out)."""
    out: dict[str, list] = defaultdict(list)
    for run in state.runs.values():
        if run.shared_window is not None:
            out[run.shared_window].append(run)
    return out


# ------------------------------------------------------------------------------------------- planner


def test_windows_group_distinct_candidates_of_one_control() -> None:
    specs = [spec("inc", role="incumbent"), spec("a"), spec("b"), spec("a", seed=1), spec("c"), spec("d"),
             spec("e", control="other")]
    groups = planner.windows(specs, 3, wait_for_more=False)
    names = [[s.candidate_id for s in g] for g in groups]
    assert names == [["inc"], ["a", "b", "c"], ["a", "d"], ["e"]]  # a twice would count its control twice
    assert [[s.candidate_id for s in g] for g in planner.windows(specs, 3, wait_for_more=True)] == \
        [["inc"], ["a", "b", "c"]]  # partial windows wait while candidates are being proposed
    assert planner.windows(specs, 1, wait_for_more=True) == [[s] for s in specs]


def test_run_events_give_every_arm_its_result_or_the_runs_failure() -> None:
    arm = RunResult(status="finished", value=0.2, metrics={"successes": 2, "trials": 10})
    ok = RunResult(status="finished", value=0.1, arms={"r-2": arm})
    events = run_events(["r-1", "r-2", "r-3"], ok)
    assert [type(e).__name__ for e in events] == ["RunFinished", "RunFinished", "RunFailed"]
    assert events[1].value == 0.2 and "no result for arm r-3" in events[2].error  # type: ignore[attr-defined]
    failed = run_events(["r-1", "r-2"], RunResult(status="invalid", error="sample ratio mismatch"))
    assert [(e.status, e.error) for e in failed] == [("invalid", "sample ratio mismatch")] * 2  # type: ignore[attr-defined]
    assert not any(e.retryable for e in failed)  # type: ignore[attr-defined]
    void = run_events(["r-1", "r-2"], RunResult(status="invalid", error="sample ratio mismatch", retryable=True))
    assert all(e.retryable for e in void)  # type: ignore[attr-defined]
    nan = run_events(["r-1"], RunResult(status="finished", value=float("nan")))
    assert nan[0].status == "diverged"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ the loop


def test_candidates_share_windows_and_each_is_judged_on_its_own_arm(tmp_path: Path) -> None:
    store = DuckDBLedger(tmp_path / "ledger.duckdb")
    domain = WindowDomain()
    state = campaign(store, tmp_path, list(SCRIPT), domain=domain, campaign_id="c-w").run()
    assert state.status == "finished"
    windows = windows_of(state)
    assert windows and max(len(w) for w in windows.values()) == 3
    for runs in windows.values():
        assert len({r.candidate_id for r in runs}) == len(runs)  # distinct candidates
        assert all(r.role == "candidate" for r in runs)
        assert len({state.candidate_parent[r.candidate_id][0] for r in runs}) == 1  # one control
        finished = [r for r in runs if r.status == "finished"]
        assert len({repr(r.control_metrics) for r in finished}) <= 1  # the same control arm
    shared = [c for c in domain.calls if c.arms]
    assert shared and all(len(c.arms) <= 2 for c in shared)
    assert all(h.verdict is not None for h in state.hypotheses.values() if h.status != "patch_rejected")
    store.close()
    with read_only_connection(tmp_path / "ledger.duckdb") as con:
        rows = con.execute("SELECT run_id, shared_window FROM runs WHERE shared_window IS NOT NULL").fetchall()
    assert {r[1] for r in rows} == set(windows)
    assert {r[0] for r in rows} == {run.run_id for runs in windows.values() for run in runs}


def test_a_window_never_starts_more_runs_than_max_runs_allows(tmp_path: Path) -> None:
    state = campaign(InMemoryLedger(), tmp_path, list(SCRIPT), domain=WindowDomain(),  # no holdback reserve
                     budgets={"max_hypotheses": None, "max_runs": 4}, judge={"holdback_max_runs": 0}).run()
    assert state.finish_reason == "max_runs" and state.n_runs == 4


def test_an_arm_the_domain_did_not_report_fails_only_that_hypothesis(tmp_path: Path) -> None:
    state = campaign(InMemoryLedger(), tmp_path, list(SCRIPT), domain=WindowDomain(drop_arm=True)).run()
    assert state.status == "finished"
    failed = [h for h in state.hypotheses.values() if h.verdict is not None and h.verdict.test == "run-failed"]
    assert failed and all("no result for arm" in h.verdict.reason for h in failed)  # type: ignore[union-attr]
    assert any(h.verdict is not None and h.verdict.test != "run-failed" for h in state.hypotheses.values())


def test_a_void_window_is_run_again_on_new_traffic_and_its_hypotheses_judged(tmp_path: Path) -> None:
    domain = WindowDomain(void_attempts=1)  # every window mismatches once, by chance
    state = campaign(InMemoryLedger(), tmp_path, list(SCRIPT), domain=domain).run()
    assert state.status == "finished"
    decided = [h for h in state.hypotheses.values() if h.verdict is not None]
    assert decided and not [h for h in decided if h.verdict.test == "run-failed"]  # type: ignore[union-attr]
    for h in decided:
        runs = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id]
        for seed in {r.seed for r in runs}:  # one void run, then its retry (attempt 2) on the same seed
            on_seed = [r for r in runs if r.seed == seed]
            assert [(r.status, r.retryable, r.attempt) for r in on_seed] == \
                [("invalid", True, 1), ("finished", False, 2)]
        if h.verdict.test != "stale":  # judged on the retries alone: one replicate per seed
            assert h.verdict.n_candidate == len({r.seed for r in runs})  # type: ignore[union-attr]
    assert {c.attempt for c in domain.calls if c.arms} == {1, 2}
    void = [r for r in state.runs.values() if r.retryable]
    assert void and all(r.failed_units > 0 for r in void)  # the void windows' visitors count in the budget
    assert state.units == sum(float(r.metrics.get("units", 0)) for r in state.runs.values()) + \
        sum(r.failed_units for r in void)


def test_a_window_void_on_its_retry_too_rejects_its_hypotheses_after_two_attempts(tmp_path: Path) -> None:
    state = campaign(InMemoryLedger(), tmp_path, list(SCRIPT), domain=WindowDomain(void_attempts=2)).run()
    assert state.status == "finished"  # the incumbent's runs pass on their third attempt; nothing loops
    decided = [h for h in state.hypotheses.values() if h.verdict is not None]
    assert decided and all(h.verdict.test == "run-failed" for h in decided)  # type: ignore[union-attr]
    for h in decided:
        assert "(attempt 2: void on new traffic too)" in h.verdict.reason  # type: ignore[union-attr]
        runs = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id]
        assert len(runs) == 2 and {r.seed for r in runs} == {runs[0].seed}


def test_a_candidate_run_that_crashes_is_not_run_again(tmp_path: Path) -> None:
    state = campaign(InMemoryLedger(), tmp_path, [{"MODE": "broken"}], domain=WindowDomain()).run()
    [h] = state.hypotheses.values()
    assert h.verdict is not None and h.verdict.test == "run-failed" and "crashed" in h.verdict.reason
    assert len([r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id]) == 1


def _window_steps(store: InMemoryLedger, campaign_id: str) -> range:
    """The crash points around the shared window: just before its first run starts, to its last run's end."""
    rows = [row.event() for row in store.read(campaign_id)]
    started = [i for i, e in enumerate(rows, 1) if isinstance(e, ev.RunStarted) and e.shared_window]
    members = {e.run_id for e in rows if isinstance(e, ev.RunStarted) and e.shared_window}
    ended = [i for i, e in enumerate(rows, 1) if isinstance(e, (ev.RunFinished, ev.RunFailed)) and e.run_id in members]
    assert started and ended
    return range(started[0] - 1, ended[-1] + 1)


@pytest.mark.parametrize("steps", [
    "window",  # where a crash can split a window; a crash anywhere else is test_campaign's every-step test
    pytest.param("every", marks=pytest.mark.slow),  # every step (~30 crash-and-resume campaigns, 20-90 s)
])
def test_resume_after_a_crash_reruns_whole_windows(tmp_path: Path, steps: str) -> None:
    script = SCRIPT[:4]
    # A fixed level, as the same decisions need the same data: a window re-run after the crash is a new attempt
    # and draws new noise, and the FDR policy's small first levels need more looks, so later windows.
    fixed = {"alpha_policy": "fixed"}
    store = InMemoryLedger()
    reference = campaign(store, tmp_path, list(script), domain=WindowDomain(), campaign_id="c-1",
                         judge=fixed).run()
    assert windows_of(reference)
    # The last two events are CampaignFinished and its signed checkpoint.
    crash_points = _window_steps(store, "c-1") if steps == "window" else range(1, reference.version - 1)
    for n in crash_points:
        store = InMemoryLedger()
        first = campaign(store, tmp_path, list(script), domain=WindowDomain(), campaign_id="c-1", judge=fixed)
        _crash_after(first, n)
        with pytest.raises(Crash):
            first.run()
        domain = WindowDomain()
        state = campaign(store, tmp_path, list(script), domain=domain, campaign_id="c-1", judge=fixed).run()
        assert state.status == "finished", n
        assert [h.status for h in state.hypotheses.values()] == \
            [h.status for h in reference.hypotheses.values()], n
        rows = [r.event() for r in store.read("c-1")]
        ends = [e.run_id for e in rows if isinstance(e, (ev.RunFinished, ev.RunFailed))]
        assert len(ends) == len(set(ends)), n
        assert all(r.status != "running" for r in state.runs.values()), n
        # A window re-run after the crash is re-run whole: one request, every arm, the same window id.
        for runs in windows_of(state).values():
            assert len({r.attempt for r in runs}) == 1, n
        for request in domain.calls:
            if request.attempt > 1 and request.arms:
                members = {request.run_id, *(a.run_id for a in request.arms)}
                assert {state.runs[m].shared_window for m in members} == {request.run_id}, n


# --------------------------------------------------------------------------------------- statistics


def test_a_null_change_is_not_accepted_more_often_than_alpha_when_windows_vary() -> None:
    """Windows of 1-3 candidates at very different conversion levels: the √n split keeps every run's
    candidate/control ratio, so pooling a hypothesis's runs stays unbiased (a split chosen per window for
    its own number of candidates would weight the levels differently in the two arms: Simpson's paradox). 2,000 null hypotheses, 1-3 runs each."""
    rng = np.random.default_rng(7)
    metric = MetricSpec(name="rate", direction="maximize", kind="proportion")
    judge = make_judge(JudgeSettings(kind="fixed", fixed_n=3, guardrails=False))
    alpha, n = 0.05, 2000
    accepted = {"kept": 0, "per_window": 0}
    for _ in range(n):
        sizes, levels = rng.integers(1, 4, size=3), rng.choice([0.02, 0.08], size=3)
        for rule in accepted:
            counts = []
            for size, level in zip(sizes, levels):
                # per_window: each window split for its own number of candidates (the ratio varies)
                visitors, split = allocation(int(size), 3 if rule == "kept" else int(size), 30_000)
                shares = split or {"control": 0.5, "treatment": 0.5}
                ctrl, cand = round(visitors * shares["control"]), round(visitors * shares["treatment"])
                counts.append((int(rng.binomial(cand, level)), cand, int(rng.binomial(ctrl, level)), ctrl))
            j = judge.judge(Evidence(metric=metric, design="concurrent", counts=tuple(counts)), alpha)
            accepted[rule] += j.decision == "accept"
    from scipy.stats import binomtest

    assert binomtest(accepted["kept"], n).proportion_ci(0.99).low <= alpha, accepted
    assert accepted["per_window"] > 2 * alpha * n, accepted  # the bias the constant ratio avoids is real
