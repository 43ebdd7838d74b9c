"""The campaign's state as a fold over its events: what the loop knows is exactly what the ledger holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import singledispatchmethod
from typing import TYPE_CHECKING, Any

from ledgerlab.core.protocols import Guardrail, MetricSpec
from ledgerlab.kinds import CampaignStatus, HypothesisStatus, RunRole, RunStatus
from ledgerlab.storage import events as ev

if TYPE_CHECKING:
    from ledgerlab.storage.ledger import EventStore

# Verdicts that are not statistical tests (a failed run, a stale parent) spend no alpha.
NOT_TESTS = frozenset({"run-failed", "stale"})


@dataclass
class RunRecord:
    """One run as the events tell it (the latest attempt)."""

    run_id: str
    candidate_id: str
    hypothesis_id: str | None
    role: RunRole
    seed: int
    attempt: int
    shared_window: str | None = None  # A/B/n: the runs sharing one window and control have one id
    status: RunStatus = "running"
    value: float | None = None
    control_value: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    control_metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retryable: bool = False  # a failure that voids the run's data, not the candidate (RunFailed.retryable)
    failed_units: float = 0.0  # budget units a failed run used all the same (RunFailed.units)
    started_at: datetime | None = None
    seconds: float | None = None  # wall-clock from its start to its end, as the ledger recorded them
    duration_s: float | None = None  # the run's own wall time, as its executor measured it (RunFinished)


@dataclass
class HypothesisRecord:
    """One hypothesis and where it stands."""

    hypothesis_id: str
    number: int
    agent: str
    proposer: str
    rationale: str
    parent_candidate_id: str
    diff: str
    changes: dict[str, Any]
    status: HypothesisStatus = "proposed"
    candidate_id: str | None = None
    verdict: ev.VerdictReached | None = None
    reason: str = ""
    # The alpha policy's view of it, fixed when its candidate is created (core/alpha.py): its index in the
    # stream of tested hypotheses, and the indices of the accepts decided before it started.
    alpha_index: int = 0
    accepts_known: tuple[int, ...] = ()
    # For policies that read earlier p-values (ADDIS): how many verdicts were reached before it started, and
    # the indices of the hypotheses then in flight (whose p-values it must not see).
    verdicts_known: int = 0
    in_flight_at_start: tuple[str, ...] = ()  # their hypothesis ids (their alpha indices were fixed at their start)


@dataclass
class CampaignState:
    """Everything the loop needs, rebuilt from events."""

    campaign_id: str
    version: int = 0
    started: ev.CampaignStarted | None = None
    status: CampaignStatus = "new"
    finish_reason: str | None = None
    pause_reason: str | None = None
    incumbent_id: str = ""
    seed_base: dict[str, int] = field(default_factory=dict)  # candidate -> first seed not used to select it
    incumbent_parent: dict[str, str] = field(default_factory=dict)  # candidate -> incumbent it replaced
    hypotheses: dict[str, HypothesisRecord] = field(default_factory=dict)
    candidate_parent: dict[str, tuple[str, str]] = field(default_factory=dict)  # candidate -> (parent, hypothesis)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    verdicts: list[ev.VerdictReached] = field(default_factory=list)  # in the order they were reached
    accepted_indices: list[int] = field(default_factory=list)  # alpha indices of the accepts, in verdict order
    tested_max_index: int = 0  # the highest alpha index whose verdict was a test
    # Discoveries imported from other campaigns, by the hypothesis id each becomes here (core/discoveries.py).
    imports: dict[str, ev.DiscoveryImported] = field(default_factory=dict)
    llm_cost_usd: float = 0.0
    llm_calls: int = 0
    unpriced_calls: int = 0  # LLM calls whose cost is unknown (not counted in llm_cost_usd)
    max_call_cost: float = 0.0
    active_seconds: float = 0.0
    segment_start: datetime | None = None
    last_at: datetime | None = None
    # The order of the stream, for charts (`ledgerlab plot`, the dashboard; core/summary.py): run ids in the
    # order their RunFinished came, and each incumbent with how many runs had finished when it took over.
    finish_order: list[str] = field(default_factory=list)
    incumbent_at: list[tuple[int, str]] = field(default_factory=list)

    # ------------------------------------------------------------------------------------ derived

    @property
    def metric(self) -> MetricSpec:
        assert self.started is not None
        return MetricSpec(**self.started.metric)

    @property
    def guardrails(self) -> tuple[Guardrail, ...] | None:
        """The guardrails recorded at the start; None when the campaign predates that record."""
        assert self.started is not None
        recorded = self.started.guardrails
        return None if recorded is None else tuple(Guardrail(**g) for g in recorded)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def units(self) -> float:
        return sum(
            float(r.metrics.get("units", 0) or 0) + r.failed_units for r in self.runs.values() if r.status != "running"
        )

    def open_hypotheses(self) -> list[HypothesisRecord]:
        """Hypotheses without a final outcome, oldest first."""
        return [h for h in self.hypotheses.values() if h.status in ("proposed", "testing")]

    def pending_imports(self) -> list[ev.DiscoveryImported]:
        """Imported discoveries not yet proposed as hypotheses, in the order they were imported."""
        return [item for hid, item in self.imports.items() if hid not in self.hypotheses]

    def next_alpha_index(self) -> int:
        """The alpha index the next tested hypothesis gets: above every index in flight or spent by a test.

        A hypothesis that ends without a test (stale, failed run) frees its index only if nothing above it was
        handed out since, so one-at-a-time testing numbers tests 1, 2, 3… and concurrent ones never share one.
        """
        in_flight = (h.alpha_index for h in self.hypotheses.values() if h.status == "testing")
        return 1 + max(self.tested_max_index, *in_flight, 0)

    def stream_before(self, record: HypothesisRecord,
                      imported: bool | None = None) -> list[tuple[int, float | None, bool | None]]:
        """The tested hypotheses ahead of `record` in the stream as it saw them when it started, in stream order.

        Each is (alpha index, p-value, accepted); p-value and accepted are None for those then in flight.
        `imported` True or False keeps only the imports' stream or only the campaign's own ideas.
        """
        return [(self.hypotheses[h].alpha_index, p, ok) for h, p, ok in self._seen(record, imported)]

    def imports_before(self, record: HypothesisRecord) -> list[tuple[str, bool | None]]:
        """The imports tested ahead of `record` as it saw them when it started: (hypothesis id, accepted or None
        while in flight), in stream order."""
        return [(h, ok) for h, _, ok in self._seen(record, imported=True)]

    def _seen(self, record: HypothesisRecord,
              imported: bool | None) -> list[tuple[str, float | None, bool | None]]:
        def kept(hypothesis_id: str) -> bool:
            return imported is None or (hypothesis_id in self.imports) == imported

        seen: list[tuple[str, float | None, bool | None]] = [
            (h, None, None) for h in record.in_flight_at_start if kept(h)]
        for verdict in self.verdicts[:record.verdicts_known]:
            if verdict.test not in NOT_TESTS and kept(verdict.hypothesis_id):
                seen.append((verdict.hypothesis_id, verdict.p_value, verdict.decision == "accept"))
        return sorted(seen, key=lambda item: self.hypotheses[item[0]].alpha_index)

    def finished_runs(self, candidate_id: str) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.candidate_id == candidate_id and r.status == "finished"]

    def elapsed(self, now: datetime) -> float:
        """Active wall-clock seconds, summed over the running segments."""
        if self.segment_start is None:
            return self.active_seconds
        return self.active_seconds + (now - self.segment_start).total_seconds()

    # --------------------------------------------------------------------------------------- fold

    def apply(self, stored: ev.StoredEvent) -> None:
        """Fold one stored event into the state."""
        self.version = stored.version
        self.last_at = stored.recorded_at
        self._apply(stored.event(), stored.recorded_at)

    @singledispatchmethod
    def _apply(self, event: ev.Event, at: datetime) -> None:
        pass  # CheckpointSigned and ProposerFailed: nothing the loop acts on (a pause records why it stopped)

    @_apply.register
    def _(self, event: ev.CampaignStarted, at: datetime) -> None:
        self.started = event
        self.status = "running"
        self.incumbent_id = event.baseline_candidate_id
        self.seed_base[event.baseline_candidate_id] = event.seed_base
        self.segment_start = at
        self.incumbent_at.append((len(self.finish_order), self.incumbent_id))

    @_apply.register
    def _(self, event: ev.CampaignPaused, at: datetime) -> None:
        self.status = "paused"
        self.pause_reason = event.reason
        self._close_segment(at)

    @_apply.register
    def _(self, event: ev.CampaignResumed, at: datetime) -> None:
        self.status = "running"
        self.segment_start = at

    @_apply.register
    def _(self, event: ev.CampaignFinished, at: datetime) -> None:
        self.status = "finished"
        self.finish_reason = event.reason
        self._close_segment(at)

    @_apply.register
    def _(self, event: ev.HypothesisProposed, at: datetime) -> None:
        self.hypotheses[event.hypothesis_id] = HypothesisRecord(
            hypothesis_id=event.hypothesis_id, number=len(self.hypotheses) + 1, agent=event.agent,
            proposer=event.proposer, rationale=event.rationale,
            parent_candidate_id=event.parent_candidate_id, diff=event.diff, changes=dict(event.changes),
        )

    @_apply.register
    def _(self, event: ev.PatchRejected, at: datetime) -> None:
        record = self.hypotheses[event.hypothesis_id]
        record.status, record.reason = "patch_rejected", event.reason

    @_apply.register
    def _(self, event: ev.CandidateCreated, at: datetime) -> None:
        record = self.hypotheses[event.hypothesis_id]
        record.in_flight_at_start = tuple(h.hypothesis_id for h in self.hypotheses.values() if h.status == "testing")
        record.alpha_index, record.accepts_known = self.next_alpha_index(), tuple(self.accepted_indices)
        record.verdicts_known = len(self.verdicts)
        record.status, record.candidate_id = "testing", event.candidate_id
        self.candidate_parent[event.candidate_id] = (event.parent_candidate_id, event.hypothesis_id)

    @_apply.register
    def _(self, event: ev.RunStarted, at: datetime) -> None:
        self.runs[event.run_id] = RunRecord(
            run_id=event.run_id, candidate_id=event.candidate_id, hypothesis_id=event.hypothesis_id,
            role=event.role, seed=event.seed, attempt=event.attempt, shared_window=event.shared_window,
            started_at=at,
        )

    @_apply.register
    def _(self, event: ev.RunFinished, at: datetime) -> None:
        run = self.runs[event.run_id]
        run.status, run.value, run.control_value = "finished", event.value, event.control_value
        run.metrics, run.control_metrics = dict(event.metrics), dict(event.control_metrics)
        run.seconds = (at - run.started_at).total_seconds() if run.started_at else None
        run.duration_s = event.duration_s
        self.finish_order.append(event.run_id)

    @_apply.register
    def _(self, event: ev.RunFailed, at: datetime) -> None:
        run = self.runs[event.run_id]
        run.status, run.error, run.retryable = event.status, event.error, event.retryable
        run.failed_units = event.units

    @_apply.register
    def _(self, event: ev.VerdictReached, at: datetime) -> None:
        record = self.hypotheses[event.hypothesis_id]
        record.verdict = event
        self.verdicts.append(event)
        if event.test not in NOT_TESTS:
            self.tested_max_index = max(self.tested_max_index, record.alpha_index)
            if event.decision == "accept":
                self.accepted_indices.append(record.alpha_index)
        record.status = "accepted" if event.decision == "accept" else "rejected"
        record.reason = event.reason

    @_apply.register
    def _(self, event: ev.IncumbentChanged, at: datetime) -> None:
        self.incumbent_parent[event.candidate_id] = event.previous_candidate_id
        self.incumbent_id = event.candidate_id
        self.seed_base[event.candidate_id] = event.seed_base
        self.incumbent_at.append((len(self.finish_order), self.incumbent_id))

    @_apply.register
    def _(self, event: ev.DiscoveryImported, at: datetime) -> None:
        self.imports[event.hypothesis_id] = event

    @_apply.register
    def _(self, event: ev.LLMCallCompleted, at: datetime) -> None:
        self.llm_calls += 1
        if event.cost_usd is not None:
            self.llm_cost_usd += event.cost_usd
            self.max_call_cost = max(self.max_call_cost, event.cost_usd)
        else:
            self.unpriced_calls += 1

    def _close_segment(self, at: datetime) -> None:
        if self.segment_start is not None:
            self.active_seconds += (at - self.segment_start).total_seconds()
            self.segment_start = None


def fold(campaign_id: str, stored: list[ev.StoredEvent]) -> CampaignState:
    """The state of one campaign after all of `stored` (its events in order)."""
    state = CampaignState(campaign_id=campaign_id)
    for row in stored:
        state.apply(row)
    return state


def append_events(store: EventStore, state: CampaignState, events: Sequence[ev.Event],
                  on_event: Callable[[ev.StoredEvent], None] | None = None) -> list[ev.StoredEvent]:
    """Append `events` to the state's stream at its version, fold each stored row in, and pass it to `on_event`."""
    stored = store.append(state.campaign_id, list(events), expected_version=state.version)
    for row in stored:
        state.apply(row)
        if on_event is not None:
            on_event(row)
    return stored
