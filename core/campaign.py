"""The campaign loop: proposer → hypothesis + patch → candidate → replicate runs → judge → verdict → incumbent.

Every step is an event appended before the next step starts, and the loop's state is a fold over those
events (core/state.py), so a campaign stopped at any moment (Ctrl-C, kill -9) resumes where it was: a
hypothesis proposed but not yet materialised is materialised, a run started but never finished is re-run
(same run id, next attempt), a look whose runs are all in is taken. This process is the only writer of
the ledger; proposers run in threads and executors run runs elsewhere, and both hand results back here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ledgerlab.core import alpha, discoveries, holdback, outcomes, planner, proposals, verdicts
from ledgerlab.core import budgets as budget_rules
from ledgerlab.core.agents import Agent, AgentPool
from ledgerlab.core.alpha import next_alpha
from ledgerlab.core.config import Budgets, CampaignConfig
from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.guardrails import GuardrailCheck, check_all, guardrails_of, veto
from ledgerlab.core.judge import (  # FDR_TARGET, GREEDY_DEFAULTS: re-exported for older imports
    FDR_TARGET,  # noqa: F401
    GREEDY_DEFAULTS,  # noqa: F401
    Judge,
    Judgement,
    judge_settings,
    make_judge,
)
from ledgerlab.core.lineage import candidate_files
from ledgerlab.core.patches import candidate_id
from ledgerlab.core.protocols import (
    Arm,
    Domain,
    Executor,
    MetricSpec,
    ProposalContext,
    RunRequest,
    RunResult,
)
from ledgerlab.core.run_design import keep_run_design, run_design
from ledgerlab.core.sandbox import Isolation, resolve_isolation
from ledgerlab.core.state import CampaignState, HypothesisRecord, append_events, fold
from ledgerlab.core.stop_signals import stop_on_signals
from ledgerlab.errors import CampaignError, LedgerLockedError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import EventStore
from ledgerlab.storage.signing import CheckpointSigner

if TYPE_CHECKING:
    from ledgerlab.core.sharing import ShareFolder

# Events between two signed checkpoints of the chain head (one is also signed at every pause and finish).
CHECKPOINT_EVERY = 200
# How long a loop ending on an error keeps trying to record its CampaignPaused while a reader holds the ledger.
PAUSE_WAIT_S = 60.0


def run_isolation(domain: Domain, policy: str) -> Isolation | Literal["none"]:
    """How this machine isolates the domain's runs: "bwrap", "process", or "none" when its artifact is data.

    Raises IsolationUnavailable when `policy` is "strict" and the sandbox cannot be used here.
    """
    if not as_domain(domain).runs_generated_code:
        return "none"
    return resolve_isolation(policy)


def open_campaign_id(store: EventStore) -> str | None:
    """The most recent search campaign in the ledger that has not finished, if any.

    A transfer campaign (core/transfer.py) is never taken up here: `ledgerlab transfer` resumes it.
    """
    for campaign_id in reversed(store.campaign_ids()):
        state = fold(campaign_id, store.read(campaign_id))
        if state.status != "finished" and (state.started is None or state.started.kind != "transfer"):
            return campaign_id
    return None


class Campaign:
    """One campaign: starts or resumes from the ledger and runs until a budget, a pause or exhaustion."""

    def __init__(
        self, store: EventStore, domain: Domain, config: CampaignConfig, *, agents: Sequence[Agent],
        executor: Executor, runs_dir: Path, campaign_id: str | None = None, domain_name: str | None = None,
        on_event: Callable[[ev.StoredEvent], None] | None = None, signer: CheckpointSigner | None = None,
        on_error: Callable[[str], None] | None = None, share: ShareFolder | None = None,
    ) -> None:
        self.store, self.domain, self.config = store, domain, config
        self.executor, self.runs_dir, self.on_event, self.on_error = executor, runs_dir, on_event, on_error
        self.share = share  # `run --share DIR`: accepts published, others' imported (core/sharing.py)
        self.domain_name = domain_name or domain.name
        self.campaign_id = campaign_id or f"c-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.state = fold(self.campaign_id, store.read(self.campaign_id))
        started = self.state.started
        # A resumed campaign keeps the judge and guardrails it started with; what it predates reads back as
        # it ran (storage/events.py's upcasters), and None guardrails as its domain's (recorded before 99e05b6).
        self.settings = holdback.recorded_settings(started.judge) if started \
            else judge_settings(config, domain.metric, domain.design)
        self.judge: Judge = make_judge(self.settings)
        self._import_judges: dict[float, Judge] = {}  # by futility bound (core/alpha.py's `import_futility`)
        if started is not None:
            keep_run_design(started.environment.get("run_design"), run_design(domain))
        recorded = self.state.guardrails if started else None
        self.guardrails = recorded if recorded is not None else \
            guardrails_of(domain) if self.settings.guardrails else ()
        self._files: dict[str, dict[str, str]] = {}
        self._needs: dict[str, int] = {}
        self._inflight: dict[str, tuple[str, ...]] = {}  # submitted run id -> the run ids of its window
        self.agents = AgentPool(agents)
        self._stop: str | None = None
        self.isolation = run_isolation(domain, config.executor.isolation)
        self.signer = signer or CheckpointSigner()  # the key in ~/.config/ledgerlab, made on first use
        self._head: tuple[int, str] | None = None  # (seq, hash) of this process's last append
        self._unsigned = 0  # events appended since the last checkpoint
        self._reserve: tuple[int, holdback.Reserve] = (-1, holdback.Reserve())  # (state version, what the holdback needs)
        self._levels: dict[str, float] = {}  # hypothesis -> its level, where computing it reads the stream

    # ---------------------------------------------------------------------------------------- events

    def _append(self, *events: ev.Event) -> None:
        stored = append_events(self.store, self.state, events, self.on_event)
        if stored:
            self._head, self._unsigned = (stored[-1].seq, stored[-1].hash), self._unsigned + len(stored)
            if self._unsigned >= CHECKPOINT_EVERY:
                self._checkpoint()

    def _checkpoint(self) -> None:
        """Sign the chain head this (only) writer left; without a key the signer warns once and signs nothing."""
        self._unsigned = 0
        event = self.signer.checkpoint(*self._head) if self._head else None
        if event is not None:
            self._append(event)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to pause at its next step (signal handlers and tests call this)."""
        self._stop = reason

    # ------------------------------------------------------------------------------------- lifecycle

    def run(self) -> CampaignState:
        """Start or resume, then loop until finished or paused; returns the final state."""
        if self.state.status == "finished":
            raise CampaignError(
                f"campaign {self.campaign_id} already finished ({self.state.finish_reason}); "
                f"`ledgerlab run` starts a new one"
            )
        failed: str | None = None
        try:
            self._begin()
            with stop_on_signals(self._request_stop):
                self._loop()
        except KeyboardInterrupt:
            self._stop = self._stop or "interrupted (Ctrl-C)"
        except Exception as exc:
            failed = f"stopped by an error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if self.on_error is not None:
                self.on_error(failed)
            raise
        finally:
            self.executor.shutdown()
            self.agents.shutdown()
            if failed is not None:
                self._pause_after_error(failed)
            elif self.state.status == "running" and self._stop:
                self._drain_sink()
                self._append(ev.CampaignPaused(reason=self._stop))
                self._checkpoint()
            if self.share is not None and failed is None:  # an accept the last pass made
                self.share.publish(self.state, self.store)
        return self.state

    def _pause_after_error(self, reason: str) -> None:
        """Record CampaignPaused for an error that ends the loop, where the ledger still takes an append.

        A ledger held by a long reader (the usual LedgerLockedError) is retried for PAUSE_WAIT_S more; any
        other failure to append leaves the ledger as it was (`status` then sees no runner and says the
        campaign stopped unexpectedly). The loop's own error is what propagates, never this one's.
        """
        if self.state.status != "running":
            return
        deadline = time.monotonic() + PAUSE_WAIT_S
        while True:
            try:
                self._drain_sink()
                self._append(ev.CampaignPaused(reason=reason))
                break
            except LedgerLockedError:
                if time.monotonic() >= deadline:
                    return
            except Exception:  # noqa: BLE001 - the ledger refuses the pause: the original error matters more
                return
        try:
            self._checkpoint()
        except Exception:  # noqa: BLE001 - the pause is recorded; an unsigned head is what `verify` reports
            pass

    def _begin(self) -> None:
        if self.state.started is None:
            self._append(self._started_event())
            return
        reruns = [r.run_id for r in self.state.runs.values() if r.status == "running"]
        self._append(ev.CampaignResumed(reruns=reruns))
        windows: dict[str, list[str]] = {}  # an A/B/n window is re-run whole, its first run first
        for run_id in reruns:
            windows.setdefault(self.state.runs[run_id].shared_window or run_id, []).append(run_id)
        for window, run_ids in windows.items():
            runs = sorted((self.state.runs[i] for i in run_ids), key=lambda r: r.run_id != window)
            specs = [planner.RunSpec(r.candidate_id, r.role, r.seed, r.hypothesis_id, self._control_of(r))
                     for r in runs]
            self._submit(specs, run_ids=[r.run_id for r in runs], attempt=runs[0].attempt + 1)

    def _started_event(self) -> ev.CampaignStarted:
        files = self.domain.baseline()
        environment = dict(as_domain(self.domain).environment())
        if design := run_design(self.domain):
            environment["run_design"] = design
        environment["isolation"] = self.isolation
        checksum = environment.get("data_checksum")
        return ev.CampaignStarted(
            domain=self.domain_name, metric=self._metric().model_dump(), design=self.domain.design,
            config=self.config.model_dump(mode="json"), judge=self.settings.model_dump(mode="json"),
            budgets=self.config.budgets.model_dump(mode="json"), baseline_files=files,
            baseline_candidate_id=candidate_id(files), environment=environment,
            data_checksum=checksum if isinstance(checksum, str) else None, seed=self.config.seed,
            seed_base=planner.first_seed(self.config.seed),
            guardrails=[g.model_dump(mode="json") for g in self.guardrails],
        )

    def _metric(self) -> MetricSpec:
        """The domain's metric, with the judge's δ override applied (recorded in CampaignStarted)."""
        metric = self.domain.metric
        if self.config.judge.delta is not None:
            metric = metric.model_copy(update={"delta": self.config.judge.delta})
        return metric


    def _request_stop(self, reason: str) -> None:
        """Stop at the next step, for `reason` (a signal: core/stop_signals.py)."""
        self._stop = reason

    def _loop(self) -> None:
        while self._stop is None:
            self._drain_sink()
            self._collect_proposals()
            if self.share is not None:  # between hypotheses: publish new accepts, queue the others' new ones
                self.share.step(self.state, self.store, self.domain_name, self._append)
            self._propose_imports(ev.utc_now())
            self._materialize_open()
            self._decide_ready()
            if self._stop is not None:
                return
            now = ev.utc_now()
            run_limit = budget_rules.run_limit(self._budgets(), self.state, now)
            self._start_runs(now)
            if self._stop is not None:
                return
            self._start_proposals(now)
            if not self._inflight and not self.agents.in_flight and not self._startable():
                self._finish(run_limit or self._idle_reason(now))
                return
            self._wait()

    def _budgets(self, spec: planner.RunSpec | None = None) -> Budgets:
        """The budgets hypothesis work runs under: `max_units`, `max_runs`, `time_limit` less the holdback's reserve.

        Holdback runs (`spec`) may use the reserve, and only they: so the final measurement is never cut short
        by the time its reserve was kept for. `max_units` and `max_runs` still bind them: a holdback that turns
        out to need more windows than its reserve (its noise estimate grew) ends at the visitor budget.
        """
        budgets = self.config.budgets
        limited = budgets.max_units or budgets.max_runs or budgets.time_limit
        if not limited or not holdback.enabled(self.state, self.settings):
            return budgets
        if spec is not None and spec.role == holdback.ROLE:
            return budgets.model_copy(update={"time_limit": None})
        if self._reserve[0] != self.state.version:  # it changes only with the ledger: once per new event
            self._reserve = (self.state.version, holdback.reserve(self.state, self.settings, self.executor.slots))
        held = self._reserve[1]
        # Never 0: a limit of 0 reads as no limit.
        return budgets.model_copy(update={
            "max_units": budgets.max_units and max(budgets.max_units - held.units, 1e-9),
            "max_runs": budgets.max_runs and max(budgets.max_runs - held.runs, 1),
            "time_limit": budgets.time_limit and max(budgets.time_limit - held.seconds, 1e-9)})

    def _finish(self, reason: str) -> None:
        now = ev.utc_now()
        detail = budget_rules.describe(reason, self.config.budgets, self.state, now)
        undecided = [h for h in self.state.open_hypotheses()]
        if undecided:
            detail += f"; {len(undecided)} hypothesis(es) left undecided"
        if queued := len(self.state.pending_imports()):  # a later campaign takes them only if imported again
            detail += f"; {queued} imported discovery(ies) left untested (`ledgerlab import` them into the next)"
        self._drain_sink()
        self._append(ev.CampaignFinished(reason=reason, detail=detail))
        self._checkpoint()

    def _idle_reason(self, now: Any) -> str:
        return budget_rules.proposal_limit(self._budgets(), self.state, now) or "proposer_exhausted"

    def _startable(self) -> bool:
        """Whether some run could start now (budgets permitting)."""
        now = ev.utc_now()
        return any(budget_rules.run_limit(self._budgets(spec), self.state, now) is None for spec in self._needed())

    def _wait(self) -> None:
        if self._inflight:
            for run_id, result in self.executor.wait(timeout=0.2):
                self._record_result(run_id, result)
        else:
            self.agents.wait(timeout=0.2)

    # ----------------------------------------------------------------------------------------- runs

    def _needed(self) -> list[planner.RunSpec]:
        index = planner.RunIndex.of(self.state)
        work = planner.needed_runs(self.state, self.domain.design, index, self._needs_for(index),
                                   self.settings.baseline_runs(self.domain.design), self.settings.confirm_runs,
                                   self.settings.seed_window)
        specs = planner.with_holdback(self.state, work, self._holdback_wanted(work))
        self._stop = self._stop or planner.failing_incumbent(index, specs)
        return specs

    def _holdback_wanted(self, work: list[planner.RunSpec]) -> int:
        """Holdback windows the incumbent should have now: one while the campaign runs, all it needs at the end."""
        if not holdback.enabled(self.state, self.settings):
            return 0
        if self._closing(work):
            return holdback.needed(self.state, self.settings)
        if self.domain.design != "concurrent":
            return 0  # independent designs: pairs at the end only, for the final incumbent
        # While the campaign runs, one window per incumbent once it is two accepts from the baseline: after
        # one, its confirmation runs already are the head-to-head comparison with the baseline.
        return 1 if holdback.depth(self.state, self.state.incumbent_id) >= 2 else 0

    def _closing(self, work: list[planner.RunSpec]) -> bool:
        """Whether only the holdback is left: no proposal may start and no other run (`work`) runs or may start."""
        now = ev.utc_now()
        if self.agents.in_flight or self._may_propose(now):
            return False
        if any(self.state.runs[run_id].role != holdback.ROLE for run_id in self._inflight):
            return False
        return not work or budget_rules.run_limit(self._budgets(), self.state, now) is not None

    def _needs_for(self, index: planner.RunIndex) -> dict[str, int]:
        """Candidate replicates each open hypothesis needs before its next look."""
        return {r.hypothesis_id: self._need(r, index) for r in self.state.open_hypotheses()}

    def _need(self, record: HypothesisRecord, index: planner.RunIndex) -> int:
        # After a restart the judge's last "more" is rebuilt from the runs already started for it.
        started = len({run.seed for run in index.by_hypothesis.get(record.hypothesis_id, [])})
        return max(self._needs.get(record.hypothesis_id, self.judge.first_n()), started)

    def _per_run(self) -> int:
        """How many candidates one run tests against one shared control (A/B/n; 1: one per run)."""
        if self.domain.design != "concurrent":
            return 1
        return max(1, int(as_domain(self.domain).candidates_per_run))

    def _start_runs(self, now: Any) -> None:
        index = planner.RunIndex.of(self.state)
        # An A/B/n window waits for more candidates while a proposal that could fill it is coming.
        more = self.agents.in_flight > 0 or self._may_propose(now)
        for batch in planner.windows(self._needed(), self._per_run(), wait_for_more=more):
            if self._stop is not None or len(self._inflight) >= self.executor.slots:
                return
            if budget_rules.run_limit(self._budgets(batch[0]), self.state, ev.utc_now()) is not None:
                continue
            batch = batch[:budget_rules.runs_left(self.config.budgets, self.state) or len(batch)]
            self._submit(batch, run_ids=[f"r-{uuid.uuid4().hex[:10]}" for _ in batch],
                         attempt=planner.attempt(self.state, index, batch[0]))

    def _submit(self, specs: Sequence[planner.RunSpec], *, run_ids: Sequence[str], attempt: int) -> None:
        """Start one run (several candidate runs when they share a window: A/B/n), each an event first."""
        window = run_ids[0] if len(specs) > 1 else None
        self._append(*(ev.RunStarted(
            run_id=run_id, candidate_id=spec.candidate_id, hypothesis_id=spec.hypothesis_id, role=spec.role,
            seed=spec.seed, worker=self.executor.name, attempt=attempt, shared_window=window,
        ) for spec, run_id in zip(specs, run_ids)))
        first = specs[0]
        control = self._files_of(first.control_id) if first.control_id else None
        arms = tuple(Arm(run_id=run_id, candidate_id=spec.candidate_id, files=self._files_of(spec.candidate_id),
                         seed=spec.seed) for spec, run_id in zip(specs[1:], run_ids[1:]))
        request = RunRequest(
            run_id=run_ids[0], candidate_id=first.candidate_id, files=self._files_of(first.candidate_id),
            seed=first.seed, workdir=self.runs_dir / run_ids[0], attempt=attempt,
            timeout_s=self.config.executor.run_timeout_s, isolation=self.config.executor.isolation,
            keep_workdir=self.config.executor.keep_workdirs,
            control_files=control, control_candidate_id=first.control_id, arms=arms,
            options=dict(self.config.domain_options),
        )
        self._inflight[run_ids[0]] = tuple(run_ids)
        self.executor.submit(self.domain_name, request)

    def _control_of(self, run: Any) -> str | None:
        if self.domain.design != "concurrent":
            return None
        if run.role == "candidate":
            return self.state.candidate_parent[run.candidate_id][0]
        if run.role == holdback.ROLE:
            assert self.state.started is not None  # runs start after CampaignStarted
            return self.state.started.baseline_candidate_id
        return self.state.incumbent_parent.get(run.candidate_id, run.candidate_id)

    def _record_result(self, run_id: str, result: RunResult) -> None:
        run_ids = self._inflight.pop(run_id, None)
        if run_ids is None:
            return  # a duplicate report (a retried worker): the first result won
        # A window's runs end in one append, so a crash never leaves half of an A/B/n run recorded.
        self._append(*outcomes.run_events(run_ids, result))

    def _files_of(self, cid: str) -> dict[str, str]:
        return candidate_files(self.state, cid, self._files)

    # -------------------------------------------------------------------------------------- judging

    def _decide_ready(self) -> None:
        index = planner.RunIndex.of(self.state)
        metric = self.state.metric
        for record in list(self.state.open_hypotheses()):
            if record.status != "testing":
                continue
            if record.parent_candidate_id != self.state.incumbent_id:
                self._verdict(record, verdicts.stale(record, self.state.incumbent_id))
                continue
            runs = planner.candidate_runs(index, record)
            failed = [r for r in runs if r.status not in ("finished", "running")
                      and not index.retry_due(record.hypothesis_id, r.seed)]
            if failed:
                self._verdict(record, verdicts.run_failed(failed[0], len(runs)))
                continue
            evidence = planner.evidence_for(self.state, self.domain.design, index, record, metric)
            if evidence is None or len(runs) < self._need(record, index):
                continue
            judgement = self._judge_of(record).judge(evidence, self._alpha(record))
            if judgement.decision == "more":
                self._needs[record.hypothesis_id] = judgement.need
            else:
                checks = self._guardrail_checks(record, index)
                final = veto(judgement, checks)
                self._verdict(record, final, checks, vetoed=final is not judgement)
            index = planner.RunIndex.of(self.state)

    def _judge_of(self, record: HypothesisRecord) -> Judge:
        """The campaign's judge; for an import, the same with the import's looser look-1 futility bound."""
        if record.hypothesis_id not in self.state.imports:
            return self.judge
        bound = alpha.import_futility(self.settings, self._alpha(record))
        if bound not in self._import_judges:
            self._import_judges[bound] = make_judge(self.settings.model_copy(update={"futility_p": bound}))
        return self._import_judges[bound]

    def _alpha(self, record: HypothesisRecord) -> float:
        """The hypothesis's level, fixed at its start (computed once)."""
        if record.hypothesis_id not in self._levels:
            self._levels[record.hypothesis_id] = self._level(record)
        return self._levels[record.hypothesis_id]

    def _level(self, record: HypothesisRecord) -> float:
        """Imports, once there are any, in a stream of their own (core/alpha.py's `investing_level`, or
        `import_level` for the other policies); the campaign's own ideas in theirs, which an import neither spends
        from nor earns for."""
        s = self.settings
        split = s.import_alpha > 0 and bool(self.state.imports)
        if alpha.in_imports_stream(s, self.state.imports, record.hypothesis_id):
            if alpha.imports_policy(s) == "investing":
                return alpha.investing_level(s, self._spent_by_imports_before(record))
            return alpha.import_level(s, self.state.stream_before(record, imported=True))
        stream = self.state.stream_before(record, imported=False if split else None)
        accepted = [i for i, _, ok in stream if ok] if split else record.accepts_known
        history = alpha.history(stream, s.fdr_lambda, s.fdr_tau) if s.alpha_policy == "fdr" else ""
        return next_alpha(s, record.alpha_index, accepted, history)

    def _spent_by_imports_before(self, record: HypothesisRecord) -> list[tuple[float, bool | None]]:
        """The earlier imports' (level, accepted) as `record` saw them at its start. Levels are filled in stream
        order, so each one's own earlier levels are known (no recursion, however many imports)."""
        earlier = [h for h in self.state.hypotheses.values()
                   if h.hypothesis_id in self.state.imports and 0 < h.alpha_index < record.alpha_index]
        for h in sorted(earlier, key=lambda h: h.alpha_index):
            self._alpha(h)
        return [(self._alpha(self.state.hypotheses[h]), ok) for h, ok in self.state.imports_before(record)]

    def _guardrail_checks(self, record: HypothesisRecord, index: planner.RunIndex) -> list[GuardrailCheck]:
        if not self.guardrails:
            return []
        return check_all(self.guardrails, planner.arm_metrics(self.domain.design, index, record))

    def _verdict(self, record: HypothesisRecord, j: Judgement, checks: Sequence[GuardrailCheck] = (),
                 vetoed: bool = False) -> None:
        seeds = (r.seed for r in self.state.runs.values())
        events = verdicts.verdict_events(record, j, alpha=self._alpha(record), judge=self.judge.name,
                                         seeds=seeds, checks=checks, vetoed=vetoed)
        item = self.state.imports.get(record.hypothesis_id)
        if item is not None and j.test == "stale":
            # A stale test said nothing about the import (an own idea moved the incumbent first): queue it again,
            # in the same append, so no crash can lose it between the two.
            events.append(discoveries.retry(item))
        self._append(*events)

    # ------------------------------------------------------------------------------------ proposing

    def _max_open(self) -> int:
        return max(len(self.agents.agents), self.executor.slots * self._per_run())

    def _may_propose(self, now: Any) -> bool:
        """Whether a proposal may start now: an idle agent, room for one more open hypothesis, budget left."""
        if not self.agents.idle(self.state.incumbent_id):
            return False
        if len(self.state.open_hypotheses()) + self.agents.in_flight >= self._max_open():
            return False
        return not budget_rules.proposal_limit(self._budgets(), self.state, now, self.agents.in_flight)

    def _start_proposals(self, now: Any) -> None:
        for agent in self.agents.idle(self.state.incumbent_id):
            if not self._may_propose(now):
                return
            self.agents.submit(agent, self._context(agent))

    def _propose_imports(self, now: Any) -> None:
        """Discoveries imported from other campaigns are proposed before the agents' own ideas, as room allows."""
        for item in self.state.pending_imports():
            if len(self.state.open_hypotheses()) + self.agents.in_flight >= self._max_open() or \
                    budget_rules.proposal_limit(self._budgets(), self.state, now, self.agents.in_flight):
                return
            self._append(*discoveries.proposal_events(item, self.state, self.domain, self._files_of))

    def _context(self, agent: Agent) -> ProposalContext:
        seed = self.config.seed * 1_000_003 + len(self.state.hypotheses) * 31 + self.agents.in_flight
        return proposals.context(self.state, self.domain, self.domain_name, agent.name, seed, self._files_of)

    def _collect_proposals(self) -> None:
        returned, stop = self.agents.collect()
        self._drain_sink()  # the LLM calls that produced them come first in the ledger
        for r in returned:
            name, kind = r.agent.name, r.agent.proposer.name
            if r.rejected is not None:
                self._append(*proposals.rejected(name, kind, r.parent, r.rejected))
            elif r.proposal is not None:
                self._append(*proposals.proposed(name, kind, r.parent, r.proposal, self.state.incumbent_id,
                                                 self._files_of))
        if stop is not None:
            self._stop = stop

    def _materialize_open(self) -> None:
        for record in list(self.state.open_hypotheses()):
            if record.status == "proposed":
                self._materialize(record)

    def _materialize(self, record: HypothesisRecord) -> None:
        """Apply, check and name the candidate of a proposed hypothesis (CandidateCreated or PatchRejected)."""
        reason, files = proposals.check_candidate(record, self.state, self.domain, self._files_of)
        if reason is not None:
            self._append(ev.PatchRejected(hypothesis_id=record.hypothesis_id, reason=reason))
            return
        assert files is not None
        cid = candidate_id(files)
        self._files[cid] = files
        self._append(ev.CandidateCreated(candidate_id=cid, hypothesis_id=record.hypothesis_id,
                                         parent_candidate_id=record.parent_candidate_id))

    def _drain_sink(self) -> None:
        batch = self.agents.events()
        if batch:
            self._append(*batch)

