"""Transfer: does a campaign's accepted lineage still help at another setting (budget, model, device, data)?

    events = start_events(source, domain, config, options, seeds)   # CampaignStarted(kind="transfer") + arms
    Transfer(store, domain, ...).run()                              # core/transfer_loop.py: runs, verdicts
    rows = table(state)                                              # per arm: source vs new effect, verdict

A transfer campaign re-runs, at the new setting, the source's baseline, its final incumbent, and each change it
accepted applied on its own to the baseline (through its knob changes when its patch no longer applies there:
core/discoveries.py's `express`), every arm on the same fresh seeds (past every seed the source used). Where
the design pairs, it pairs: independent runs on matched seeds (paired t), A/B runs against the baseline in the
same window (the pooled test on the visitors). Each arm is tested against the baseline once, at the runs it
has, by the judge's fixed-n test for this metric and design at δ = 0 and one-sided α = 0.025, so the interval
recorded is a two-sided 95% one. Every run and verdict is an event of the transfer campaign; a killed transfer
resumes from them (`ledgerlab transfer --dir D` again; the loop is core/transfer_loop.py).

The verdict per arm compares the new effect (> 0 better) with the effect the source found:
- holds: the same sign, the new 95% interval excludes 0, and the new effect is at least half the source's;
- shrinks: the same sign, but the interval includes 0 or the effect is under half the source's;
- reverses: the opposite sign, and the interval excludes 0;
- unclear: the opposite sign with an interval that includes 0, or no interval (fewer than 2 finished pairs),
  or no source effect to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.discoveries import express
from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.effects import confirmed, finished, fresh_runs, improvement
from ledgerlab.core.holdback import recorded_settings
from ledgerlab.core.judge import Evidence, Judgement, make_judge
from ledgerlab.core.lineage import candidate_files
from ledgerlab.core.patches import candidate_id, make_diff
from ledgerlab.core.planner import concurrent_evidence
from ledgerlab.core.proposals import new_hypothesis_id
from ledgerlab.core.protocols import Domain
from ledgerlab.core.run_design import run_design
from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord
from ledgerlab.errors import CampaignError
from ledgerlab.storage import events as ev

KIND: Literal["transfer"] = "transfer"
PROPOSER = "transfer"  # the `proposer` of an arm's hypothesis; its agent is "transfer:<source campaign>"
ALPHA = 0.025  # one-sided: the fixed-n test's interval at 1 − 2α is the 95% interval the table shows
FINAL = "final incumbent"
VERDICTS = ("holds", "shrinks", "reverses", "unclear")
PENDING = "pending"  # an arm with no test yet (fewer than 2 finished pairs while the transfer runs)
REEXPRESSED = "its patch does not apply to the baseline"  # how an arm's note starts when made through its knobs


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
                         _note(made, label, files, f"{REEXPRESSED}: made there as {shown}" if note else "")))
        note = note.replace("this incumbent", "the baseline")
        later += _arm_events(hid, source, f"{label} on its own: {h.rationale}{note}", h.diff, h.changes,
                             base, files, reason)
    final = candidate_files(source, source.incumbent_id, cache)
    hid = new_hypothesis_id()
    arms.append(_arm(hid, FINAL, None, _final_effect(source), _note(made, FINAL, final, "")))
    later += _arm_events(hid, source, f"the final incumbent {source.incumbent_id[:12]}: every accepted change",
                         make_diff(base, final), {}, base, final, "")
    environment = dict(as_domain(domain).environment())
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


def folded(recorded: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The earlier accepted changes arm `index` carries besides its own: a change re-expressed through its knobs
    sets them to their values after it, so on the baseline it also makes every earlier accepted step on those
    knobs (EMBED_LR 2e-3 → 8e-3 made on a baseline at 1e-3 is 1e-3 → 2e-3 → 8e-3)."""
    arm = recorded[index]
    knobs = set(arm.get("changes") or {})
    if not knobs or not str(arm.get("note", "")).startswith(REEXPRESSED):
        return []
    return [a for a in recorded[:index] if a.get("source_hypothesis_id") and knobs & set(a.get("changes") or {})]


def source_of(recorded: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """The source effect to compare arm `index` with: its own, or the sum of those of the steps it carries.

    A sum's interval adds the parts' variances (the parts were measured on separate runs), each part's
    half-width read as a 95% one (an "as selected" interval is wider than that: the sum's is then wider too).
    """
    arm, carried = recorded[index], folded(recorded, index)
    if not carried:
        return arm.get("source_effect")
    found = [a.get("source_effect") for a in (*carried, arm)]
    parts = [p for p in found if p is not None and p.get("ci_low") is not None and p.get("ci_high") is not None]
    if len(parts) < len(found):
        return None
    z = NormalDist().inv_cdf(0.975)
    total = sum(float(p["effect"]) for p in parts)
    se = sum(((float(p["ci_high"]) - float(p["ci_low"])) / (2 * z)) ** 2 for p in parts) ** 0.5
    labels = [a["label"] for a in (*carried, arm)]
    basis = "confirmed" if all(p["basis"] == "confirmed" for p in parts) else "selected"
    return {"effect": total, "ci_low": total - z * se, "ci_high": total + z * se, "basis": basis,
            "sum_of": labels, "method": f"the sum of {' + '.join(labels)}'s effects, variances added"}


def evidence(state: CampaignState, cid: str) -> Evidence | None:
    """The arm's finished runs against the baseline: matched seeds, or same-window A/B runs."""
    assert state.started is not None
    metric, base = state.metric, state.started.baseline_candidate_id
    mine = _done(state, cid)
    if state.started.design == "concurrent":
        return concurrent_evidence(mine, metric) if mine else None
    # _done gives finished runs, each with a value (the `is not None` only says so to the type checker)
    baseline = {r.seed: float(r.value) for r in _done(state, base) if r.value is not None}
    pairs = tuple((float(r.value), baseline[r.seed]) for r in mine if r.seed in baseline and r.value is not None)
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
    recorded = arms(state)
    for i, arm in enumerate(recorded):
        h = state.hypotheses.get(arm["hypothesis_id"])
        src = source_of(recorded, i)
        s = src.get("effect") if src else None
        label, rationale, about = arm["label"], arm.get("rationale", ""), arm.get("note", "")
        if carried := folded(recorded, i):
            about += f"; so it carries {', '.join(a['label'] for a in carried)} too"
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
        word = verdict_of(s, effect, low, high) if v is not None or j is not None else PENDING
        rows.append(Row(label, rationale, src, effect, low, high, n, test, word, note, about))
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
