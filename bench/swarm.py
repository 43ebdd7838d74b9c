"""Campaigns that share discoveries: blind adoption vs re-verification vs no sharing, on the simulated market.

On each market (market_seed = index), K campaigns of equal traffic (the same visitor budget, campaign seeds
100·index + k, so each draws its own visitors and proposes its own ideas) run through the real loop in
rounds: each runs until it has used r/R of its budget, pauses (CampaignPaused), and the swarm shares; the
next round resumes it on its own ledger (CampaignResumed). The last round runs each to its end (holdback
included). Three ways to share the accepts a round made:

* blind:  the gossip networks' rule. Each campaign's own accepts are adopted by the others as their
          incumbent without a test: DiscoveryImported, then the change built on their incumbent
          (core/discoveries.py's `proposal_events`), its candidate, a VerdictReached of test "adopted"
          and IncumbentChanged. An adoption is not a statistical test: it spends no alpha and earns no
          FDR wealth (as a stale verdict does not), so each campaign's own judge is the same in every arm;
* verify: ledgerlab's rule. Each campaign's own accepts are exported as a bundle (`store_body`,
          `bundle_text`, `read_bundle`) and imported by the others (`import_events`): queued hypotheses
          that their own judge tests against their own incumbent, on their own runs;
* none:   no sharing.

Only a campaign's own discoveries are shared (an accepted import or an adoption is not passed on: its
source already sent it to everyone). Afterwards, and only then, the market's truth scores every campaign:

* true lift: the final incumbent's true conversion rate over the baseline page's (relative);
* false discoveries: incumbent changes (own accepts, adoptions, accepted imports) whose true lift over the
  incumbent they replaced is at most +0.1% (bench/decisions.py's FD_TOLERANCE); and how many of the false
  own accepts reached another campaign's incumbent ("spread");
* true revenue per visitor of the final page (relative to the baseline's), and the changes that truly lowered it
  by more than 0.1%: the revenue guardrail, on by default, exists to refuse those, and counts its vetoes;
* time to a real discovery: the campaign's visitors (and round) when its incumbent first took a change of
  true lift above +0.1%, own or shared.

Means carry Student-t 95% intervals over markets × campaigns, shares Wilson intervals, arm differences a
t interval over markets (each market's campaigns averaged: a market's campaigns share what they adopt).

    python bench/swarm.py                 # 20 markets x 4 campaigns x 3 arms, 1M visitors each (4 min idle, 16 loaded)
    python bench/swarm.py --quick         # 3 markets, a smoke test

Writes bench/results/swarm.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerlab.bench import _campaigns as cb
from ledgerlab.bench.decisions import FD_TOLERANCE
from ledgerlab.core import discoveries, holdback, verdicts
from ledgerlab.core import state as state_module
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.judge import Judgement
from ledgerlab.core.patches import apply_diff, candidate_id
from ledgerlab.core.registry import load_proposer
from ledgerlab.core.state import CampaignState, fold
from ledgerlab.domains.marketing.market import Market
from ledgerlab.domains.marketing.variant import template_variant
from ledgerlab.storage import events as ev
from ledgerlab.storage.memory import InMemoryLedger

ARMS = ("blind", "verify", "none")
ADOPTED = "adopted"  # the proposer and verdict test of a blind adoption
FD_TARGET = 0.10


# --------------------------------------------------------------------------------------------- members


@dataclass
class Member:
    """One campaign of the swarm: its own ledger, config and the state folded from it."""

    campaign_id: str
    store: InMemoryLedger
    config: CampaignConfig
    runs_dir: Path
    state: CampaignState

    def refold(self) -> None:
        self.state = fold(self.campaign_id, self.store.read(self.campaign_id))

    def append(self, *events: ev.Event) -> None:
        self.store.append(self.campaign_id, list(events), expected_version=self.state.version)
        self.refold()


def make_member(index: int, k: int, budget: float, args: argparse.Namespace, tmp: Path) -> Member:
    """Campaign k of market `index`: the marketing domain's defaults, its own seed and ledger."""
    seed = 100 * index + k
    options = {"market_seed": index, "visitors_per_run": args.visitors_per_run}
    config = CampaignConfig(domain="marketing", seed=seed, domain_options=options,
                            budgets={"max_units": budget, "max_hypotheses": args.max_hypotheses},
                            judge={**({"kind": args.judge} if args.judge else {}), **args.judge_options},
                            proposer={"kind": "knob"})
    cid = f"swarm-{index}-{k}"
    return Member(cid, InMemoryLedger(), config, tmp / cid, CampaignState(campaign_id=cid))


def run_round(member: Member, domain: Any, share: float | None) -> None:
    """Start or resume the campaign until it has used `share` of its hypothesis budget (paused there), or to its
    end (None). The hypothesis budget is the visitor budget less the holdback's reserve (core/holdback.py), so
    every round but the last ends in a pause, never in the campaign's finish."""
    if member.state.status == "finished":
        return
    holder: dict[str, Campaign] = {}
    budget = float(member.config.budgets.max_units or 0)

    def watch(row: ev.StoredEvent) -> None:
        campaign = holder["c"]
        if share is None or row.type != "RunFinished":
            return
        work = budget - holdback.reserve(campaign.state, campaign.settings, campaign.executor.slots).units
        if campaign.state.units >= share * work:
            campaign.request_stop(f"round done at {campaign.state.units:,.0f} visitors")

    config = member.config
    holder["c"] = Campaign(member.store, domain, config, agents=[Agent("agent-0", load_proposer(config.proposer))],
                           executor=LocalExecutor(domain), runs_dir=member.runs_dir, campaign_id=member.campaign_id,
                           on_event=watch)
    member.state = holder["c"].run()
    if share is None and member.state.status != "finished":
        raise RuntimeError(f"{member.campaign_id} did not finish: {member.state.status} ({member.state.pause_reason})")


# -------------------------------------------------------------------------------------------- sharing


def own_bundle(member: Member) -> discoveries.Bundle:
    """The member's own accepted changes as a bundle, read back through its integrity check."""
    body = discoveries.store_body(member.store, member.campaign_id)
    body["discoveries"] = [d for d in body["discoveries"] if _own(d["agent"], d["proposer"])]
    return discoveries.read_bundle(discoveries.bundle_text(body), f"{member.campaign_id}.json")


def _own(agent: str, proposer: str) -> bool:
    return proposer not in (discoveries.PROPOSER, ADOPTED) and not agent.startswith("imported:")


def share(members: list[Member], arm: str, domain: Any) -> None:
    """After a round: every member's own accepts go to every other one, as the arm shares them."""
    if arm == "none":
        return
    bundles = [own_bundle(m) for m in members]
    for target in members:
        if target.state.status == "finished":
            continue
        for source, bundle in zip(members, bundles):
            if source is target:
                continue
            new, _already = discoveries.import_events(bundle, target.state, "marketing", f"{source.campaign_id}.json")
            if arm == "verify":
                if new:
                    target.append(*new)
                continue
            for item in new:
                adopt(target, item, domain)


def adopt(member: Member, item: ev.DiscoveryImported, domain: Any) -> None:
    """Blind adoption: the change becomes the incumbent without a test (or is recorded as not applicable)."""
    files_of = lambda cid: cb.files_of(member.state, cid)  # noqa: E731
    events = discoveries.proposal_events(item, member.state, domain, files_of)
    proposed = events[0]
    assert isinstance(proposed, ev.HypothesisProposed)
    proposed = proposed.model_copy(update={"agent": f"{ADOPTED}:{item.source_campaign_id}", "proposer": ADOPTED})
    if len(events) > 1:  # the patch does not apply here, or the incumbent already has it: nothing to adopt
        member.append(item, proposed, *events[1:])
        return
    member.append(item, proposed)
    record = member.state.hypotheses[item.hypothesis_id]
    # Not the loop's check_candidate: the gossip rule adopts a change even where this campaign tested and
    # rejected the same candidate itself. Only a return to an earlier incumbent is refused (its lineage).
    files = apply_diff(files_of(record.parent_candidate_id), record.diff)
    cid = candidate_id(files)
    assert member.state.started is not None
    if cid in member.state.incumbent_parent or cid == member.state.started.baseline_candidate_id:
        member.append(ev.PatchRejected(hypothesis_id=item.hypothesis_id, reason="returns to an earlier incumbent"))
        return
    member.append(ev.CandidateCreated(candidate_id=cid, hypothesis_id=item.hypothesis_id,
                                      parent_candidate_id=record.parent_candidate_id))
    record = member.state.hypotheses[item.hypothesis_id]
    judgement = Judgement(decision="accept", need=0, test=ADOPTED, statistic=None, p_value=None, effect=item.effect,
                          ci_low=item.ci_low, ci_high=item.ci_high, n_candidate=0, n_incumbent=0, alpha_spent=0.0,
                          look=0, reason=f"adopted without a test: {item.source_campaign_id} accepted it")
    seeds = (r.seed for r in member.state.runs.values())
    member.append(*verdicts.verdict_events(record, judgement, alpha=0.0, judge=ADOPTED, seeds=seeds))


@contextmanager
def adoptions_not_tests() -> Iterator[None]:
    """Fold an adoption's verdict as no test (like a stale one): it must not earn the judge FDR wealth."""
    before = state_module.NOT_TESTS
    state_module.NOT_TESTS = before | {ADOPTED}
    try:
        yield
    finally:
        state_module.NOT_TESTS = before


# ------------------------------------------------------------------------------------------ one swarm


def run_swarm(index: int, arm: str, args: argparse.Namespace, market: Market) -> list[dict[str, Any]]:
    """K campaigns on market `index`, sharing as `arm` says between rounds; each scored on the truth."""
    domain = cb.marketing_domain(market_seed=index, visitors_per_run=args.visitors_per_run)
    try:
        with tempfile.TemporaryDirectory(prefix="ledgerlab-swarm-") as tmp:
            members = swarm(index, arm, args, domain, Path(tmp))
            return [score(m, market, arm, index, k) for k, m in enumerate(members)]
    finally:
        domain.close()


def swarm(index: int, arm: str, args: argparse.Namespace, domain: Any, tmp: Path) -> list[Member]:
    """The K campaigns of market `index` run round by round, sharing as `arm` says between rounds."""
    with adoptions_not_tests():
        members = [make_member(index, k, args.budget, args, tmp) for k in range(args.k)]
        for r in range(1, args.rounds + 1):
            last = r == args.rounds
            for m in members:
                run_round(m, domain, None if last else r / args.rounds)
            if not last:
                share(members, arm, domain)
    return members


def score(member: Member, market: Market, arm: str, index: int, k: int) -> dict[str, Any]:
    """The campaign against the truth: every incumbent change, when it came, whence, and its true lift."""
    rate = lambda files: market.true_effects(files)["conversion_rate"]  # noqa: E731
    rpv = lambda files: market.true_effects(files)["revenue_per_visitor"]  # noqa: E731
    base, base_rpv = rate(template_variant()), rpv(template_variant())
    state = CampaignState(campaign_id=member.campaign_id)
    changes: list[dict[str, Any]] = []
    round_no = 1
    for row in member.store.read(member.campaign_id):
        state.apply(row)
        event = row.event()
        if isinstance(event, ev.CampaignPaused):
            round_no += 1  # a pause ends a round: what is adopted while paused governs the next one
        if not isinstance(event, ev.IncumbentChanged):
            continue
        h = state.hypotheses[event.hypothesis_id]
        old, new = cb.files_of(state, event.previous_candidate_id), cb.files_of(state, event.candidate_id)
        before, after = rate(old), rate(new)
        item = state.imports.get(h.hypothesis_id)
        changes.append({
            "hypothesis": h.number, "kind": _kind(h.proposer, h.agent), "changes": h.changes,
            "source": [item.source_campaign_id, item.source_hypothesis_id] if item else None,
            "hypothesis_id": h.hypothesis_id, "true_lift_rel": after / before - 1.0,
            "lift_rel_after": after / base - 1.0, "units": state.units, "round": round_no,
            "true_rpv_rel": rpv(new) / rpv(old) - 1.0,
        })
    final_files = cb.files_of(member.state, member.state.incumbent_id)
    final = rate(final_files)
    real = [c for c in changes if c["true_lift_rel"] > FD_TOLERANCE]
    hyps = member.state.hypotheses.values()
    return {
        "arm": arm, "market": index, "campaign": k, "campaign_id": member.campaign_id, "seed": member.config.seed,
        **cb.campaign_counts(member.state), "base_rate": base, "final_rate": final, "lift_rel": final / base - 1.0,
        "rpv_lift_rel": rpv(final_files) / base_rpv - 1.0, "guarded_lift_rel": guarded_lift(changes),
        "changes": changes, "fd": sum(c["true_lift_rel"] <= FD_TOLERANCE for c in changes),
        "imports": len(received(member.state)),
        "received": [[i.source_campaign_id, i.source_hypothesis_id, member.state.hypotheses[hid].status
                      if hid in member.state.hypotheses else "queued"] for hid, i in received(member.state).items()],
        "imports_tested": sum(h.proposer == discoveries.PROPOSER and h.status in ("accepted", "rejected") for h in hyps),
        "imports_accepted": sum(h.proposer == discoveries.PROPOSER and h.status == "accepted" for h in hyps),
        "tested_imports": tested_imports(member.state, rate, rpv),
        "first_real_units": real[0]["units"] if real else None, "first_real_round": real[0]["round"] if real else None,
    }


def guarded_lift(changes: list[dict[str, Any]]) -> float:
    """The true lift the changes that did not cut revenue per visitor brought: the final lift is the product of
    every change's (1 + true lift over the incumbent it replaced), this the product over those alone."""
    product = 1.0
    for change in changes:
        if not _harms(change):
            product *= 1.0 + change["true_lift_rel"]
    return product - 1.0


def received(state: CampaignState) -> dict[str, ev.DiscoveryImported]:
    """Each shared change the campaign imported, by its last attempt (an import whose test went stale is queued
    again under a new hypothesis)."""
    last = {(i.source_campaign_id, i.source_hypothesis_id): (hid, i) for hid, i in state.imports.items()}
    return dict(last.values())


def tested_imports(state: CampaignState, rate: Any, rpv: Any) -> list[dict[str, Any]]:
    """Each import this campaign's judge decided: its true lift over the incumbent it was tested against."""
    out = []
    for h in state.hypotheses.values():
        if h.proposer == discoveries.PROPOSER and h.candidate_id and h.verdict and h.verdict.test != "stale":
            new, old = cb.files_of(state, h.candidate_id), cb.files_of(state, h.parent_candidate_id)
            out.append({"hypothesis": h.number, "status": h.status, "true_lift_rel": rate(new) / rate(old) - 1.0,
                        "true_rpv_rel": rpv(new) / rpv(old) - 1.0, "test": h.verdict.test,
                        "vetoed": bool(h.verdict.details.get("guardrail_veto")),
                        "looks": h.verdict.looks, "n_candidate": h.verdict.n_candidate,
                        "level": h.verdict.details.get("alpha"),
                        "futility": h.verdict.reason.startswith("futility")})
    return out


def _kind(proposer: str, agent: str) -> str:
    if proposer == ADOPTED:
        return "adopted"
    return "imported" if proposer == discoveries.PROPOSER else "own"


# ------------------------------------------------------------------------------------------- summaries


def spread(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(false own accepts that became another campaign's incumbent, those that reached another to be adopted or
    tested there: shared, and neither already there nor inapplicable)."""
    by_id = {(r["market"], r["campaign_id"]): r for r in rows}
    reached = chances = 0
    for target in rows:
        for source_cid, source_hid, status in target["received"]:
            source = by_id[(target["market"], source_cid)]
            change = next(c for c in source["changes"] if c["hypothesis_id"] == source_hid)
            if change["true_lift_rel"] > FD_TOLERANCE or status == "patch_rejected":
                continue
            chances += 1
            reached += status == "accepted"
    return reached, chances


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One arm: lift, changes, false discoveries (and their spread), time to the first real change."""
    changes = [c for r in rows for c in r["changes"]]
    fd = sum(r["fd"] for r in rows)
    shared = [c for c in changes if c["kind"] != "own"]
    firsts = [r["first_real_units"] for r in rows if r["first_real_units"] is not None]
    rounds = [r["first_real_round"] for r in rows if r["first_real_round"] is not None]
    reached, chances = spread(rows)
    return {
        "campaigns": len(rows), "lift_rel": cb.mean_ci([r["lift_rel"] for r in rows]),
        "rpv_lift_rel": cb.mean_ci([r["rpv_lift_rel"] for r in rows]),
        "guarded_lift_rel": cb.mean_ci([r["guarded_lift_rel"] for r in rows]),
        "revenue_harms": sum(_harms(c) for c in changes), "shared_revenue_harms": sum(_harms(c) for c in shared),
        "changes_per_campaign": cb.mean_ci([len(r["changes"]) for r in rows]),
        "changes": len(changes), "fd": fd, "fd_share": cb.wilson(fd, len(changes)),
        "own_changes": len(changes) - len(shared),
        "own_fd": sum(c["true_lift_rel"] <= FD_TOLERANCE for c in changes if c["kind"] == "own"),
        "shared_changes": len(shared), "shared_fd": sum(c["true_lift_rel"] <= FD_TOLERANCE for c in shared),
        "false_spread": {"reached": reached, "chances": chances, "share": cb.wilson(reached, chances)},
        "imports": sum(r["imports"] for r in rows), "imports_tested": sum(r["imports_tested"] for r in rows),
        **reverified(rows),
        "imports_accepted": sum(r["imports_accepted"] for r in rows),
        "reached_real": cb.wilson(len(firsts), len(rows)),
        "first_real_visitors": cb.mean_ci(firsts), "first_real_round": cb.mean_ci(rounds),
        "visitors_per_campaign": cb.mean_ci([r["units"] for r in rows]),
        "seconds": sum(r.get("seconds", 0.0) for r in rows),
    }


def _harms(change: dict[str, Any]) -> bool:
    """Whether a change truly lowered revenue per visitor (by more than the FD tolerance): the revenue guardrail,
    on by default in the marketing domain, is there to refuse such a change."""
    return bool(change["true_rpv_rel"] < -FD_TOLERANCE)


def reverified(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the importers' judges met the imports they tested: real ones accepted, false ones rejected."""
    tests = [t for r in rows for t in r.get("tested_imports", [])]
    real = [t for t in tests if t["true_lift_rel"] > FD_TOLERANCE]
    false = [t for t in tests if t["true_lift_rel"] <= FD_TOLERANCE]
    return {"real_imports_accepted": cb.wilson(sum(t["status"] == "accepted" for t in real), len(real)),
            "real_imports_tested": len(real),
            "real_imports_futility": sum(t["futility"] for t in real),
            "false_imports_accepted": cb.wilson(sum(t["status"] == "accepted" for t in false), len(false)),
            "false_imports_tested": len(false),
            "real_import_lift": cb.mean_ci([t["true_lift_rel"] for t in real]),
            "vetoed_imports": sum(t["vetoed"] for t in tests),
            "vetoed_imports_harming": sum(t["vetoed"] and _harms(t) for t in tests)}


def paired(rows: dict[str, list[dict[str, Any]]], a: str, b: str,
           key: str = "lift_rel") -> tuple[float | None, float | None, float | None]:
    """Lift (or `key`) of arm a minus arm b, each market's campaigns averaged, with a t interval over markets."""
    def per_market(arm: str) -> dict[int, float]:
        out: dict[int, list[float]] = {}
        for r in rows[arm]:
            out.setdefault(r["market"], []).append(r[key])
        return {m: sum(v) / len(v) for m, v in out.items()}

    ma, mb = per_market(a), per_market(b)
    return cb.mean_ci([ma[m] - mb[m] for m in ma if m in mb])


def targets(summary: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The issue's goal, checked on point estimates (intervals beside them)."""
    b, a, c = summary["verify"], summary["blind"], summary["none"]
    out = {
        "verify_lift_ge_blind": b["lift_rel"][0] >= a["lift_rel"][0],
        "verify_minus_blind": paired(rows, "verify", "blind"),
        "verify_minus_blind_rpv": paired(rows, "verify", "blind", "rpv_lift_rel"),
        "verify_minus_blind_guarded": paired(rows, "verify", "blind", "guarded_lift_rel"),
        "verify_fd_le_10pct": b["fd_share"][0] is not None and b["fd_share"][0] <= FD_TARGET,
        "blind_spreads_every_false": a["false_spread"]["reached"] == a["false_spread"]["chances"],
        "blind_false_received": a["false_spread"]["chances"],
        "verify_beats_none": b["lift_rel"][0] > c["lift_rel"][0], "verify_minus_none": paired(rows, "verify", "none"),
        "blind_beats_none": a["lift_rel"][0] > c["lift_rel"][0], "blind_minus_none": paired(rows, "blind", "none"),
    }
    out["met"] = all(v for k, v in out.items() if isinstance(v, bool))
    return out


# --------------------------------------------------------------------------------------------- printing


def print_tables(summary: dict[str, Any], goal: dict[str, Any], args: argparse.Namespace) -> None:
    pct: dict[str, Any] = dict(scale=100, digits=1)
    header = ["arm", "true lift of final", "changes/camp.", "false disc. (share of changes)", "own / shared FD",
              "false accepts spread", "reached a real change", "visitors to first real", "its round"]
    rows = []
    for arm, s in summary.items():
        sp = s["false_spread"]
        rows.append([
            arm, cb.fmt_ci(s["lift_rel"], suffix="%", **pct), cb.fmt_ci(s["changes_per_campaign"], digits=1),
            f"{s['fd']}/{s['changes']} = " + cb.fmt_ci(s["fd_share"], suffix="%", **pct),
            f"{s['own_fd']}/{s['own_changes']}, {s['shared_fd']}/{s['shared_changes']}",
            f"{sp['reached']}/{sp['chances']}" if sp["chances"] else "-",
            cb.fmt_ci(s["reached_real"], suffix="%", **pct),
            cb.fmt_ci(s["first_real_visitors"], scale=1e-3, digits=0, suffix="k"),
            cb.fmt_ci(s["first_real_round"], digits=1),
        ])
    print(f"\nSwarms of {args.k} campaigns x {args.budget:,.0f} visitors ({args.visitors_per_run:,} per run), "
          f"{args.rounds} rounds, {args.markets} markets; judge: "
          + (f"{args.judge or 'the marketing default'} {args.judge_options or ''}".strip()))
    print(cb.table(rows, header))
    print("false discovery: an incumbent change of true lift <= +0.1% over the incumbent it replaced; "
          "spread: of the false accepts another campaign received (not a no-op there), those it adopted; "
          "95% intervals (t for means, Wilson for shares)")
    revenue = [[arm, cb.fmt_ci(s["rpv_lift_rel"], suffix="%", **pct),
                f"{s['revenue_harms']}/{s['changes']}", f"{s['shared_revenue_harms']}/{s['shared_changes']}",
                cb.fmt_ci(s["guarded_lift_rel"], suffix="%", **pct)]
               for arm, s in summary.items()]
    print(cb.table(revenue, ["arm", "true revenue/visitor of final", "changes that cut revenue/visitor",
                             "of them shared (adopted or accepted imports)", "true lift of the others"]))
    print("the revenue guardrail (the marketing default) refuses a change that lowers revenue per visitor; a change "
          "counts as cutting it when its true revenue per visitor is lower by more than 0.1%")
    v = summary["verify"]
    print(f"verify: {v.get('vetoed_imports', 0)} imports vetoed by the importer's revenue guardrail after passing its "
          f"conversion test ({v.get('vetoed_imports_harming', 0)} of them truly cut revenue per visitor)")
    print(f"verify: {v['imports']} imports, {v['imports_tested']} tested by the importer's judge, "
          f"{v['imports_accepted']} accepted; real ones (true lift there > +0.1%, mean "
          f"{cb.fmt_ci(v['real_import_lift'], suffix='%', **pct)}) accepted "
          f"{cb.fmt_ci(v['real_imports_accepted'], suffix='%', **pct)} of {v['real_imports_tested']} "
          f"({v['real_imports_futility']} stopped for futility), false ones accepted "
          f"{cb.fmt_ci(v['false_imports_accepted'], suffix='%', **pct)} of {v['false_imports_tested']}")
    pp: dict[str, Any] = dict(scale=100, digits=2)
    print(f"\nGoal: {'MET' if goal['met'] else 'MISSED'}")
    print(f"  verify lift >= blind lift: {goal['verify_lift_ge_blind']} "
          f"(verify - blind {cb.fmt_ci(goal['verify_minus_blind'], **pp)} pp, paired by market)")
    if goal.get("verify_minus_blind_rpv"):
        print(f"  (beside it, true revenue per visitor: verify - blind "
              f"{cb.fmt_ci(goal['verify_minus_blind_rpv'], **pp)} pp; in the lift of the changes that did not cut "
              f"revenue per visitor {cb.fmt_ci(goal['verify_minus_blind_guarded'], **pp)} pp)")
    print(f"  verify false discoveries <= {FD_TARGET:.0%}: {goal['verify_fd_le_10pct']} "
          f"({cb.fmt_ci(v['fd_share'], suffix='%', **pct)})")
    sp = summary["blind"]["false_spread"]
    print(f"  blind spreads every false accept: {goal['blind_spreads_every_false']} ({sp['reached']} of "
          f"{sp['chances']} received" + (": vacuous, the judges made no false accept to spread)" if not sp["chances"]
                                         else ")"))
    print(f"  verify beats none: {goal['verify_beats_none']} ({cb.fmt_ci(goal['verify_minus_none'], **pp)} pp); "
          f"blind beats none: {goal['blind_beats_none']} ({cb.fmt_ci(goal['blind_minus_none'], **pp)} pp)")


# ------------------------------------------------------------------------------------------------- main


def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every arm on every market; rows per arm."""
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in args.arms}
    for index in range(args.markets):
        market = Market.seeded(index)
        for arm in args.arms:
            started = time.perf_counter()
            got = run_swarm(index, arm, args, market)
            seconds = time.perf_counter() - started
            for r in got:
                r["seconds"] = seconds / len(got)
            rows[arm].extend(got)
            lifts = " ".join(f"{r['lift_rel']:+.1%}" for r in got)
            print(f"  market {index:3} {arm:6}: lifts {lifts}, "
                  f"false {sum(r['fd'] for r in got)}/{sum(len(r['changes']) for r in got)}, {seconds:.1f}s",
                  file=sys.stderr, flush=True)
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markets", type=int, default=20, help="seeded markets (default 20)")
    ap.add_argument("--k", type=int, default=4, help="campaigns per swarm (default 4)")
    ap.add_argument("--budget", type=float, default=1_000_000, help="visitors per campaign (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds; sharing happens between them (default 8)")
    ap.add_argument("--visitors-per-run", type=int, default=25_000)
    ap.add_argument("--max-hypotheses", type=int, default=2000, help="a safety cap; the visitor budget binds")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--judge", choices=("stats", "greedy", "fixed"), default=None,
                    help="every campaign's judge (default: the marketing domain's, stats with guardrails)")
    ap.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a [judge] setting for every campaign, e.g. alpha_policy=fixed (JSON values)")
    ap.add_argument("--quick", action="store_true", help="3 markets: a smoke test")
    ap.add_argument("--out", type=Path, default=cb.RESULTS / "swarm.json")
    args = ap.parse_args(argv)
    args.judge_options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.judge_option)}
    if args.quick:
        args.markets = min(args.markets, 3)
    return args


def _value(text: str) -> Any:
    """A --judge-option value: JSON where it parses (numbers, true/false), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started, code = time.perf_counter(), cb.code_versions()
    rows = run_all(args)
    summary = {arm: summarize(rs) for arm, rs in rows.items()}
    goal = targets(summary, rows) if set(ARMS) <= set(rows) else {"met": None}
    elapsed = time.perf_counter() - started
    if goal["met"] is not None:
        print_tables(summary, goal, args)
    print(f"\n{elapsed:.0f} s in all")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    cb.write_json(args.out, {"settings": {**settings, "fd_tolerance_rel": FD_TOLERANCE}, "targets": goal,
                             "summary": summary, "campaigns": rows, "seconds": elapsed, "code": code})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
