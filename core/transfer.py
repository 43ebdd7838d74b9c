"""Transfer: does a campaign's accepted lineage still help at another setting (budget, model, device, data)?

    events = start_events(source, domain, config, options, seeds)   # CampaignStarted(kind="transfer") + arms
    Transfer(store, domain, executor, runs_dir, campaign_id).run()   # runs, then one verdict per arm
    rows = table(state)                                              # per arm: source vs new effect, verdict

A transfer campaign re-runs, at the new setting, the source's baseline, its final incumbent, and each change it
accepted applied on its own to the baseline (through its knob changes when its patch no longer applies there:
core/discoveries.py's `express`), every arm on the same fresh seeds (past every seed the source used). Where
the design pairs, it pairs: independent runs on matched seeds (paired t), A/B runs against the baseline in the
same window (the pooled test on the visitors). Each arm is tested against the baseline once, at the runs it
has, by the judge's fixed-n test for this metric and design at δ = 0 and one-sided α = 0.025, so the interval
recorded is a two-sided 95% one. Every run and verdict is an event of the transfer campaign; a killed transfer
resumes from them (`ledgerlab transfer --dir D` again).

The verdict per arm compares the new effect (> 0 better) with the effect the source found:
- holds: the same sign, the new 95% interval excludes 0, and the new effect is at least half the source's;
- shrinks: the same sign, but the interval includes 0 or the effect is under half the source's;
- reverses: the opposite sign, and the interval excludes 0;
- unclear: the opposite sign with an interval that includes 0, or no interval (fewer than 2 finished pairs),
  or no source effect to compare with.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerlab.core import outcomes
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.discoveries import express
from ledgerlab.core.effects import confirmed, finished, fresh_runs, improvement
from ledgerlab.core.holdback import recorded_settings
from ledgerlab.core.judge import Evidence, Judgement, make_judge
from ledgerlab.core.lineage import candidate_files
from ledgerlab.core.patches import candidate_id, make_diff
from ledgerlab.core.planner import concurrent_evidence
from ledgerlab.core.proposals import new_hypothesis_id
from ledgerlab.core.protocols import Domain, Executor, RunRequest, RunResult
from ledgerlab.core.run_design import run_design
from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord
from ledgerlab.errors import CampaignError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import EventStore
from ledgerlab.storage.signing import CheckpointSigner

KIND = "transfer"
PROPOSER = "transfer"  # the `proposer` of an arm's hypothesis; its agent is "transfer:<source campaign>"
ALPHA = 0.025  # one-sided: the fixed-n test's interval at 1 − 2α is the 95% interval the table shows
FINAL = "final incumbent"
VERDICTS = ("holds", "shrinks", "reverses", "unclear")


# ------------------------------------------------------------------------------------------ starting


def source_changes(source: CampaignState) -> list[HypothesisRecord]:
    """The changes the source accepted, in the order it accepted them; CampaignError when there is none."""
    accepted = [source.hypotheses[v.hypothesis_id] for v in source.verdicts if v.decision == "accept"]
    if not accepted:
        raise CampaignError(f"nothing to transfer: campaign {source.campaign_id} accepted no change")
    return accepted


def fresh_seeds(source: CampaignState, n: int) -> list[int]:
    """`n` seeds past every seed the source ran (and its first seed), so none of them selected anything."""
    assert source.started is not None
    first = max([source.started.seed_base - 1, *(r.seed for r in source.runs.values())]) + 1
    return list(range(first, first + n))


def start_events(source: CampaignState, domain: Domain, domain_name: str, config: CampaignConfig,
                 options: dict[str, Any], seeds: Sequence[int], isolation: str) -> list[ev.Event]:
    """CampaignStarted (kind "transfer") and, for each arm, its hypothesis and candidate (or why it cannot run)."""
    started = source.started
    assert started is not None
    base = dict(started.baseline_files)
    cache: dict[str, dict[str, str]] = {}
    arms: list[dict[str, Any]] = []
    later: list[ev.Event] = []
    made: dict[str, str] = {}  # candidate id -> the first arm made of those files
    for h in source_changes(source):
        hid = new_hypothesis_id()
        item = ev.DiscoveryImported(hypothesis_id=hid, source_campaign_id=source.campaign_id,
                                    source_hypothesis_id=h.hypothesis_id, source_number=h.number,
                                    domain=domain_name, rationale=h.rationale, diff=h.diff, changes=h.changes)
        files, note, reason = express(item, base, domain)
        label = f"#{h.number}"
        shown = ", ".join(f"{k} = {v!r}" for k, v in h.changes.items())
        arms.append(_arm(hid, label, h, _source_effect(source, h),
                         _note(made, label, files, f"its patch does not apply to the baseline: made there as "
                                                   f"{shown}" if note else "")))
        note = note.replace("this incumbent", "the baseline")
        later += _arm_events(hid, source, f"{label} on its own: {h.rationale}{note}", h.diff, h.changes,
                             base, files, reason)
    final = candidate_files(source, source.incumbent_id, cache)
    hid = new_hypothesis_id()
    arms.append(_arm(hid, FINAL, None, _final_effect(source), _note(made, FINAL, final, "")))
    later += _arm_events(hid, source, f"the final incumbent {source.incumbent_id[:12]}: every accepted change",
                         make_diff(base, final), {}, base, final, "")
    environment = dict(getattr(domain, "environment", lambda: {})())
    if design := run_design(domain):
        environment["run_design"] = design
    environment["isolation"] = isolation
    judge = recorded_settings(started.judge).model_copy(update={"kind": "fixed", "fixed_n": len(seeds),
                                                                "delta": 0.0})
    first = ev.CampaignStarted(
        domain=domain_name, metric=started.metric, design=started.design,
        config=config.model_dump(mode="json"), judge=judge.model_dump(mode="json"),
        budgets=config.budgets.model_dump(mode="json"), baseline_files=base,
        baseline_candidate_id=started.baseline_candidate_id, environment=environment,
        data_checksum=environment.get("data_checksum") if isinstance(environment.get("data_checksum"), str) else None,
        seed=config.seed, seed_base=seeds[0], guardrails=[], kind=KIND,
        transfer={"source_campaign_id": source.campaign_id, "options": dict(options), "seeds": list(seeds),
                  "alpha": ALPHA, "source_judge": started.judge.get("kind"), "arms": arms},
    )
    return [first, *later]


def _arm(hid: str, label: str, h: HypothesisRecord | None, effect: dict[str, Any] | None,
         note: str) -> dict[str, Any]:
    return {"hypothesis_id": hid, "label": label, "source_hypothesis_id": h.hypothesis_id if h else None,
            "source_number": h.number if h else None, "rationale": h.rationale if h else "",
            "changes": dict(h.changes) if h else {}, "source_effect": effect, "note": note}


def _note(made: dict[str, str], label: str, files: dict[str, str] | None, note: str) -> str:
    """What a reader must know about the arm's files: re-expressed, or the same files as an earlier arm
    (one accept's final incumbent is that change; a knob set twice is, on the baseline, both steps at once)."""
    if files is None:
        return note
    same = made.setdefault(candidate_id(files), label)
    twin = f"the same files as {same}" if same != label else ""
    return "; ".join(x for x in (note, twin) if x)


def _arm_events(hid: str, source: CampaignState, rationale: str, diff: str, changes: dict[str, Any],
                base: dict[str, str], files: dict[str, str] | None, reason: str) -> list[ev.Event]:
    """The arm as a hypothesis on the baseline: its candidate, or PatchRejected when it cannot be made there."""
    assert source.started is not None
    parent = source.started.baseline_candidate_id
    shown = make_diff(base, files) if files is not None else diff
    proposed = ev.HypothesisProposed(hypothesis_id=hid, agent=f"transfer:{source.campaign_id}", proposer=PROPOSER,
                                     rationale=rationale, parent_candidate_id=parent, diff=shown, changes=changes)
    if files is None:
        return [proposed, ev.PatchRejected(hypothesis_id=hid, reason=reason)]
    if files == base:
        return [proposed, ev.PatchRejected(hypothesis_id=hid, reason="no-op on the baseline")]
    return [proposed, ev.CandidateCreated(candidate_id=candidate_id(files), hypothesis_id=hid,
                                          parent_candidate_id=parent)]


def _source_effect(source: CampaignState, h: HypothesisRecord) -> dict[str, Any] | None:
    """The change's effect in the source: confirmed on fresh runs when it was, else as selected (winner's curse)."""
    got = confirmed(source, h)
    if got is not None and got.low is not None:
        return {"effect": got.effect, "ci_low": got.low, "ci_high": got.high, "basis": "confirmed",
                "method": got.method}
    v = h.verdict
    if v is None or v.effect is None:
        return None
    level = v.details.get("ci_level")
    return {"effect": v.effect, "ci_low": v.ci_low, "ci_high": v.ci_high, "basis": "selected",
            "method": f"{v.test}, selected at" + (f" ({level:.1%} interval)" if isinstance(level, float) else "")}


def _final_effect(source: CampaignState) -> dict[str, Any] | None:
    """The final incumbent's improvement over the baseline as the source's `status` reports it."""
    assert source.started is not None
    base = finished(source, source.started.baseline_candidate_id)
    got = improvement(source, fresh_runs(source, source.incumbent_id), base)
    if got is None:
        return None
    return {"effect": got.effect, "ci_low": got.low, "ci_high": got.high, "basis": "improvement",
            "method": got.method}


# --------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Row:
    """One line of the transfer table."""

    label: str
    rationale: str
    source: dict[str, Any] | None  # {"effect", "ci_low", "ci_high", "basis", "method"}
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    test: str
    verdict: str
    note: str = ""  # "so far" while the arm runs, or why it was not run
    about: str = ""  # how the arm's files were made, when a reader must know (re-expressed, shared)


def arms(state: CampaignState) -> list[dict[str, Any]]:
    """The arms a transfer campaign recorded when it started."""
    assert state.started is not None and state.started.transfer is not None
    return list(state.started.transfer.get("arms", []))


def evidence(state: CampaignState, cid: str) -> Evidence | None:
    """The arm's finished runs against the baseline: matched seeds, or same-window A/B runs."""
    assert state.started is not None
    metric, base = state.metric, state.started.baseline_candidate_id
    mine = _done(state, cid)
    if state.started.design == "concurrent":
        return concurrent_evidence(mine, metric) if mine else None
    baseline = {r.seed: float(r.value) for r in _done(state, base)}  # type: ignore[arg-type]
    pairs = tuple((float(r.value), baseline[r.seed]) for r in mine if r.seed in baseline)  # type: ignore[arg-type]
    return Evidence(metric=metric, design="independent", pairs=pairs) if pairs else None


def _done(state: CampaignState, cid: str) -> list[RunRecord]:
    return sorted((r for r in state.runs.values() if r.candidate_id == cid and r.status == "finished"
                   and r.value is not None), key=lambda r: r.seed)


def measure(state: CampaignState, cid: str) -> Judgement | None:
    """The judge's fixed-n test of the arm against the baseline at the runs it has (None under 2)."""
    assert state.started is not None
    found = evidence(state, cid)
    n = 0 if found is None else len(found.counts or found.sums or found.pairs)
    if found is None or n < 2:
        return None
    settings = recorded_settings(state.started.judge).model_copy(update={"fixed_n": n})
    return make_judge(settings).judge(found, ALPHA)


def verdict_of(source: float | None, effect: float | None, low: float | None, high: float | None) -> str:
    """holds / shrinks / reverses / unclear, by the rule in the module docstring."""
    if source is None or source == 0 or effect is None or effect == 0 or low is None or high is None:
        return "unclear"
    same = (effect > 0) == (source > 0)
    excludes = low > 0 or high < 0
    if same:
        return "holds" if excludes and abs(effect) >= abs(source) / 2 else "shrinks"
    return "reverses" if excludes else "unclear"


def table(state: CampaignState) -> list[Row]:
    """The transfer table from the events: each arm's recorded verdict, or its runs so far while it runs."""
    rows = []
    for arm in arms(state):
        h = state.hypotheses.get(arm["hypothesis_id"])
        src = arm.get("source_effect")
        s = src.get("effect") if src else None
        label, rationale, about = arm["label"], arm.get("rationale", ""), arm.get("note", "")
        if h is None or h.candidate_id is None:
            note = h.reason if h is not None else "not started"
            rows.append(Row(label, rationale, src, None, None, None, 0, "", "unclear", f"not run: {note}", about))
            continue
        v = h.verdict
        j = None if v is not None else measure(state, h.candidate_id)
        effect, low, high = (v.effect, v.ci_low, v.ci_high) if v else (j.effect, j.ci_low, j.ci_high) if j \
            else (None, None, None)
        n = v.n_candidate if v else j.n_candidate if j else 0
        test = v.test if v else j.test if j else ""
        note = "" if v is not None else "so far"
        rows.append(Row(label, rationale, src, effect, low, high, n, test, verdict_of(s, effect, low, high), note,
                        about))
    return rows


def verdict_event(state: CampaignState, h: HypothesisRecord, source: dict[str, Any] | None) -> ev.VerdictReached:
    """The arm's recorded result: the test against the baseline, and the transfer verdict in `details`."""
    assert h.candidate_id is not None
    j = measure(state, h.candidate_id)
    s = source.get("effect") if source else None
    if j is None:
        runs = [r for r in state.runs.values() if r.candidate_id == h.candidate_id]
        failed = sum(r.status not in ("finished", "running") for r in runs)
        return ev.VerdictReached(hypothesis_id=h.hypothesis_id, decision="reject", test="run-failed",
                                 reason=f"fewer than 2 finished runs against the baseline ({failed} failed)",
                                 details={"judge": KIND, "transfer": "unclear", "source": source})
    word = verdict_of(s, j.effect, j.ci_low, j.ci_high)
    return ev.VerdictReached(
        hypothesis_id=h.hypothesis_id, decision="accept" if j.decision == "accept" else "reject",
        reason=f"{j.reason}; transfer: {word}", test=j.test, statistic=j.statistic, p_value=j.p_value,
        effect=j.effect, ci_low=j.ci_low, ci_high=j.ci_high, n_candidate=j.n_candidate,
        n_incumbent=j.n_incumbent, alpha_spent=j.alpha_spent, looks=1,
        details={"judge": KIND, "alpha": ALPHA, "ci_level": j.ci_level, "transfer": word, "source": source},
    )


# ----------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Spec:
    candidate_id: str
    hypothesis_id: str | None
    seed: int


def needed(state: CampaignState) -> list[Spec]:
    """Runs not started yet, seed by seed (so a stopped transfer has balanced arms): baseline first, then arms."""
    assert state.started is not None and state.started.transfer is not None
    started = {(r.candidate_id, r.seed) for r in state.runs.values()}
    arms_by_cid: dict[str, str] = {}
    for h in state.hypotheses.values():  # one candidate can be two arms (the final incumbent of one accept)
        if h.candidate_id is not None:
            arms_by_cid.setdefault(h.candidate_id, h.hypothesis_id)
    specs = []
    for seed in state.started.transfer["seeds"]:
        if state.started.design != "concurrent":  # A/B runs carry the baseline as their control arm
            specs.append(Spec(state.started.baseline_candidate_id, None, seed))
        specs += [Spec(cid, hid, seed) for cid, hid in arms_by_cid.items()]
    return [s for s in specs if (s.candidate_id, s.seed) not in started]


class Transfer:
    """Runs one transfer campaign to its end (or a pause); the only writer, like core/campaign.py's loop."""

    def __init__(self, store: EventStore, domain: Domain, config: CampaignConfig, executor: Executor,
                 runs_dir: Path, campaign_id: str, domain_name: str, start: list[ev.Event] | None = None,
                 on_event: Any = None, signer: CheckpointSigner | None = None) -> None:
        from ledgerlab.core.state import fold

        self.store, self.domain, self.config, self.executor = store, domain, config, executor
        self.runs_dir, self.campaign_id, self.domain_name = runs_dir, campaign_id, domain_name
        self.on_event, self.signer = on_event, signer or CheckpointSigner()
        self.state = fold(campaign_id, store.read(campaign_id))
        self._start = start or []
        self._inflight: set[str] = set()
        self._stop: str | None = None
        self._head: tuple[int, str] | None = None

    def _append(self, *events: ev.Event) -> None:
        stored = self.store.append(self.campaign_id, list(events), expected_version=self.state.version)
        for row in stored:
            self.state.apply(row)
            if self.on_event is not None:
                self.on_event(row)
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
            with self._signals():
                self._loop()
        except KeyboardInterrupt:
            self._stop = self._stop or "interrupted (Ctrl-C)"
        finally:
            self.executor.shutdown()
        if self._stop is not None:
            self._append(ev.CampaignPaused(reason=self._stop))
        else:
            self._finish()
        self._checkpoint()
        return self.state

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
                self._submit(spec, f"r-{new_hypothesis_id()[2:]}", 1)
            for run_id, result in self.executor.wait(timeout=0.2):
                self._record(run_id, result)

    def _submit(self, spec: Spec, run_id: str, attempt: int) -> None:
        assert self.state.started is not None
        if attempt == 1:
            role = "incumbent" if spec.hypothesis_id is None else "candidate"
            self._append(ev.RunStarted(run_id=run_id, candidate_id=spec.candidate_id, hypothesis_id=spec.hypothesis_id,
                                       role=role, seed=spec.seed, worker=self.executor.name))  # type: ignore[arg-type]
        else:
            old = self.state.runs[run_id]
            self._append(ev.RunStarted(run_id=run_id, candidate_id=old.candidate_id, hypothesis_id=old.hypothesis_id,
                                       role=old.role, seed=old.seed, worker=self.executor.name,  # type: ignore[arg-type]
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
        sources = {arm["hypothesis_id"]: arm.get("source_effect") for arm in arms(self.state)}
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

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM pause the transfer cleanly (`ledgerlab transfer` again resumes it)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: object) -> None:
            self._stop = f"interrupted ({signal.Signals(signum).name})"

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
