"""The transfer campaign's loop: the single writer that runs every arm on every seed, then records the verdicts.

    Transfer(store, domain, config, executor, runs_dir, campaign_id, domain_name, start=events).run()

It starts the campaign with the events core/transfer.py's `start_events` made (or resumes it: the runs that
started and never ended are re-run under the same id, the next attempt), keeps up to `executor.slots` runs in
flight, records each result as it comes (RunFinished / RunFailed), and ends with one VerdictReached per arm and
CampaignFinished. A run whose data is void by chance (RunFailed.retryable: a marketing window whose split fails
the sample-ratio test) is run once more on its seed as a new run, its next attempt (new traffic), as the search
loop does (core/planner.py's MAX_VOID_ATTEMPTS), so one unlucky window does not cost an arm a pair. Ctrl-C or
SIGTERM pauses it (CampaignPaused); `ledgerlab transfer` again resumes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledgerlab.core import outcomes
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.lineage import candidate_files
from ledgerlab.core.planner import void_retry
from ledgerlab.core.protocols import Domain, Executor, RunRequest, RunResult
from ledgerlab.core.state import CampaignState, RunRecord, append_events, fold
from ledgerlab.core.stop_signals import stop_on_signals
from ledgerlab.core.transfer import VERDICTS, arms, source_of, table, verdict_event
from ledgerlab.errors import CampaignError
from ledgerlab.kinds import RunRole
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import EventStore
from ledgerlab.storage.signing import CheckpointSigner


@dataclass(frozen=True)
class Spec:
    """One run to start: a candidate (the baseline has no hypothesis) on a seed, as its `attempt` there."""

    candidate_id: str
    hypothesis_id: str | None
    seed: int
    attempt: int = 1


def needed(state: CampaignState) -> list[Spec]:
    """Runs not started yet, seed by seed (so a stopped transfer has balanced arms): baseline first, then arms;
    and the retry of a void run (every earlier run on its seed void, fewer than MAX_VOID_ATTEMPTS of them)."""
    assert state.started is not None and state.started.transfer is not None
    earlier: dict[tuple[str, int], list[RunRecord]] = {}
    for r in state.runs.values():
        earlier.setdefault((r.candidate_id, r.seed), []).append(r)
    arms_by_cid: dict[str, str] = {}
    for h in state.hypotheses.values():  # one candidate can be two arms (the final incumbent of one accept)
        if h.candidate_id is not None:
            arms_by_cid.setdefault(h.candidate_id, h.hypothesis_id)
    specs = []
    for seed in state.started.transfer["seeds"]:
        if state.started.design != "concurrent":  # A/B runs carry the baseline as their control arm
            specs.append(Spec(state.started.baseline_candidate_id, None, seed))
        specs += [Spec(cid, hid, seed) for cid, hid in arms_by_cid.items()]
    due = []
    for spec in specs:
        runs = earlier.get((spec.candidate_id, spec.seed), [])
        retry = void_retry(runs)
        if not runs or retry is not None:
            due.append(Spec(spec.candidate_id, spec.hypothesis_id, spec.seed, attempt=retry or 1))
    return due


class Transfer:
    """Runs one transfer campaign to its end (or a pause); the only writer, like core/campaign.py's loop."""

    def __init__(self, store: EventStore, domain: Domain, config: CampaignConfig, executor: Executor,
                 runs_dir: Path, campaign_id: str, domain_name: str, start: list[ev.Event] | None = None,
                 on_event: Callable[[ev.StoredEvent], None] | None = None, signer: CheckpointSigner | None = None) -> None:
        self.store, self.domain, self.config, self.executor = store, domain, config, executor
        self.runs_dir, self.campaign_id, self.domain_name = runs_dir, campaign_id, domain_name
        self.on_event, self.signer = on_event, signer or CheckpointSigner()
        self.state = fold(campaign_id, store.read(campaign_id))
        self._start = start or []
        self._inflight: set[str] = set()
        self._stop: str | None = None
        self._head: tuple[int, str] | None = None

    def _append(self, *events: ev.Event) -> None:
        stored = append_events(self.store, self.state, events, self.on_event)
        if stored:
            self._head = (stored[-1].seq, stored[-1].hash)

    def _checkpoint(self) -> None:
        event = self.signer.checkpoint(*self._head) if self._head else None
        if event is not None:
            self._append(event)

    def run(self) -> CampaignState:
        """Start (or resume), run every arm on every seed, record the verdicts and finish; or pause on Ctrl-C."""
        if self.state.status == "finished":
            raise CampaignError(f"transfer campaign {self.campaign_id} already finished")
        try:
            self._begin()
            with stop_on_signals(self._request_stop):
                self._loop()
        except KeyboardInterrupt:
            self._stop = self._stop or "interrupted (Ctrl-C)"
        except Exception as exc:
            self._pause_after_error(f"stopped by an error: {type(exc).__name__}: {str(exc)[:300]}")
            raise
        finally:
            self.executor.shutdown()
        if self._stop is not None:
            self._append(ev.CampaignPaused(reason=self._stop))
        else:
            self._finish()
        self._checkpoint()
        return self.state

    def _pause_after_error(self, reason: str) -> None:
        """Record why the transfer stopped, where the ledger still takes it (else `status` sees no runner)."""
        if self.state.status != "running":
            return
        try:
            self._append(ev.CampaignPaused(reason=reason))
        except Exception:  # noqa: BLE001 - the loop's own error is the one to report
            pass

    def _begin(self) -> None:
        if self.state.started is None:
            self._append(*self._start)
            return
        reruns = [r for r in self.state.runs.values() if r.status == "running"]
        self._append(ev.CampaignResumed(reruns=[r.run_id for r in reruns]))
        for r in reruns:  # the same run id, its next attempt (as the search loop re-runs them)
            self._submit(Spec(r.candidate_id, r.hypothesis_id, r.seed), r.run_id, r.attempt + 1)

    def _loop(self) -> None:
        todo = needed(self.state)
        while self._stop is None and (todo or self._inflight):
            while todo and len(self._inflight) < self.executor.slots and self._stop is None:
                spec = todo.pop(0)
                self._submit(spec, f"r-{uuid.uuid4().hex[:10]}", spec.attempt)
            results = list(self.executor.wait(timeout=0.2))
            for run_id, result in results:
                self._record(run_id, result)
            if any(result.retryable for _, result in results):
                todo = needed(self.state)  # the void run's retry joins the queue (started runs are left out)

    def _submit(self, spec: Spec, run_id: str, attempt: int) -> None:
        assert self.state.started is not None
        if run_id not in self.state.runs:  # a new run: a first attempt, or the retry of a void run on its seed
            role: RunRole = "incumbent" if spec.hypothesis_id is None else "candidate"
            self._append(ev.RunStarted(run_id=run_id, candidate_id=spec.candidate_id, hypothesis_id=spec.hypothesis_id,
                                       role=role, seed=spec.seed, worker=self.executor.name, attempt=attempt))
        else:  # a run that started and never ended, resumed under its id
            old = self.state.runs[run_id]
            self._append(ev.RunStarted(run_id=run_id, candidate_id=old.candidate_id, hypothesis_id=old.hypothesis_id,
                                       role=old.role, seed=old.seed, worker=self.executor.name,
                                       attempt=attempt))
        base = self.state.started.baseline_files
        concurrent = self.state.started.design == "concurrent"
        request = RunRequest(
            run_id=run_id, candidate_id=spec.candidate_id, files=self._files(spec.candidate_id), seed=spec.seed,
            workdir=self.runs_dir / run_id, attempt=attempt, timeout_s=self.config.executor.run_timeout_s,
            isolation=self.config.executor.isolation, keep_workdir=self.config.executor.keep_workdirs,
            control_files=dict(base) if concurrent else None,
            control_candidate_id=self.state.started.baseline_candidate_id if concurrent else None,
            options=dict(self.config.domain_options),
        )
        self._inflight.add(run_id)
        self.executor.submit(self.domain_name, request)

    def _files(self, cid: str) -> dict[str, str]:
        return candidate_files(self.state, cid)

    def _record(self, run_id: str, result: RunResult) -> None:
        if run_id not in self._inflight:
            return  # a duplicate report: the first result won
        self._inflight.discard(run_id)
        self._append(*outcomes.run_events([run_id], result))

    def _finish(self) -> None:
        recorded = arms(self.state)
        sources = {arm["hypothesis_id"]: source_of(recorded, i) for i, arm in enumerate(recorded)}
        verdicts = [verdict_event(self.state, h, sources.get(h.hypothesis_id))
                    for h in self.state.hypotheses.values() if h.status == "testing"]
        if verdicts:
            self._append(*verdicts)
        words = [row.verdict for row in table(self.state)]
        counts = ", ".join(f"{words.count(w)} {w}" for w in VERDICTS if words.count(w))
        assert self.state.started is not None and self.state.started.transfer is not None
        options = " ".join(f"{k}={v}" for k, v in self.state.started.transfer["options"].items())
        self._append(ev.CampaignFinished(reason="transfer_measured",
                                         detail=f"{len(words)} arm(s) re-measured at {options or 'the same setting'}: "
                                                f"{counts}"))

    def _request_stop(self, reason: str) -> None:
        """Stop at the next step, for `reason` (a signal: core/stop_signals.py)."""
        self._stop = reason

