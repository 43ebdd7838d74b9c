"""bench/swarm.py at a small size: blind adoption adopts every shared accept, re-verification tests them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ledgerlab.core import discoveries
from ledgerlab.domains.marketing.market import Market
from ledgerlab.storage import events as ev

# This module tests a bench script (bench/swarm.py): it runs from a source checkout and is skipped where
# ledgerlab is installed without bench/.
cb = pytest.importorskip("ledgerlab.bench._campaigns", reason="bench/ is scripts in the source tree, not part of the installed package")
sw = pytest.importorskip("ledgerlab.bench.swarm", reason="bench/ is scripts in the source tree, not part of the installed package")

# slow: three swarms of real campaigns. Fast: tests/test_discoveries.py and tests/test_share.py import accepts
# and re-test them with the importer's judge; this checks the bench's arms and scores.
pytestmark = pytest.mark.slow

# Market 4 with these seeds makes an accept in the first round (checked below), so there is something to share.
MARKET = 4
ARGS = ["--k", "2", "--budget", "1000000", "--rounds", "2"]


def run(arm: str, tmp: Path) -> list[sw.Member]:
    args = sw.parse(ARGS)
    domain = cb.marketing_domain(market_seed=MARKET, visitors_per_run=args.visitors_per_run)
    try:
        return sw.swarm(MARKET, arm, args, domain, tmp / arm)
    finally:
        domain.close()


def own_accepts_of_round_1(member: sw.Member) -> set[str]:
    """The member's own accepts made before its first pause (the ones shared after round 1)."""
    out, paused = set(), False
    for row in member.store.read(member.campaign_id):
        event = row.event()
        paused = paused or isinstance(event, ev.CampaignPaused)
        if isinstance(event, ev.IncumbentChanged) and not paused:
            h = member.state.hypotheses[event.hypothesis_id]
            if h.proposer not in (discoveries.PROPOSER, sw.ADOPTED):
                out.add(event.hypothesis_id)
    return out


def imported_from(target: sw.Member, source: sw.Member) -> dict[str, Any]:
    """source hypothesis id -> the hypothesis it became in `target`."""
    return {i.source_hypothesis_id: target.state.hypotheses.get(hid) for hid, i in target.state.imports.items()
            if i.source_campaign_id == source.campaign_id}


@pytest.fixture(scope="module")
def swarms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[sw.Member]]:
    tmp = tmp_path_factory.mktemp("swarm")
    return {arm: run(arm, tmp) for arm in sw.ARMS}


def test_every_campaign_ran_its_budget_in_rounds(swarms: dict[str, list[sw.Member]]) -> None:
    for members in swarms.values():
        for m in members:
            assert m.state.status == "finished"
            types = [row.type for row in m.store.read(m.campaign_id)]
            assert types.count("CampaignPaused") == 1 and types.count("CampaignResumed") == 1
            assert m.state.units <= 1_000_000 + 3 * 25_000  # the budget, and the window in flight at the end


def test_blind_adoption_adopts_every_accept_untested(swarms: dict[str, list[sw.Member]]) -> None:
    members = swarms["blind"]
    shared = 0
    for source in members:
        for target in members:
            if target is source:
                continue
            got = imported_from(target, source)
            for hid in own_accepts_of_round_1(source):
                shared += 1
                h = got[hid]  # every accept reached every other campaign
                assert h.proposer == sw.ADOPTED and h.agent == f"{sw.ADOPTED}:{source.campaign_id}"
                if h.status == "accepted":
                    assert h.verdict.test == sw.ADOPTED and h.verdict.n_candidate == 0
                    assert not any(r.hypothesis_id == h.hypothesis_id and r.role == "candidate"
                                   for r in target.state.runs.values())  # never tested (its confirmation may run)
                    assert h.alpha_index not in target.state.accepted_indices  # no FDR wealth from it
                else:  # the incumbent already had it, or it does not apply here
                    assert h.status == "patch_rejected"
    assert shared > 0


def test_reverification_tests_imports_with_the_importers_judge(swarms: dict[str, list[sw.Member]]) -> None:
    members = swarms["verify"]
    imports = 0
    for target in members:
        for source in members:
            if target is source:
                continue
            got = imported_from(target, source)
            assert set(got) == own_accepts_of_round_1(source)
            for h in got.values():
                imports += 1
                assert h is not None and h.proposer == discoveries.PROPOSER
                assert h.agent == f"imported:{source.campaign_id}"
                assert h.status in ("accepted", "rejected", "patch_rejected")
                if h.status in ("accepted", "rejected"):
                    assert h.verdict.test not in (sw.ADOPTED, "stale") or h.status == "rejected"
                if h.status == "accepted":  # on this campaign's own runs (A/B counts may accept from look 1)
                    own = [r for r in target.state.runs.values()
                           if r.hypothesis_id == h.hypothesis_id and r.role == "candidate" and r.status == "finished"]
                    assert 1 <= h.verdict.n_candidate <= len(own)
        assert not any(h.proposer == sw.ADOPTED for h in target.state.hypotheses.values())
    assert imports > 0
    assert not any(m.state.imports for m in swarms["none"])


def test_scores_and_summary(swarms: dict[str, list[sw.Member]]) -> None:
    market = Market.seeded(MARKET)
    rows = {arm: [sw.score(m, market, arm, MARKET, k) for k, m in enumerate(ms)] for arm, ms in swarms.items()}
    for arm, rs in rows.items():
        for r in rs:
            assert r["fd"] == sum(c["true_lift_rel"] <= sw.FD_TOLERANCE for c in r["changes"])
            kinds = {c["kind"] for c in r["changes"]}
            assert kinds <= {"own", {"blind": "adopted", "verify": "imported", "none": "own"}[arm]}
            if r["changes"]:
                assert r["lift_rel"] == pytest.approx(r["changes"][-1]["lift_rel_after"])
            # The final page's revenue per visitor is the baseline's times each change's true ratio.
            assert 1 + r["rpv_lift_rel"] == pytest.approx(math.prod(1 + c["true_rpv_rel"] for c in r["changes"]))
    summary = {arm: sw.summarize(rs) for arm, rs in rows.items()}
    reached, chances = summary["blind"]["false_spread"]["reached"], summary["blind"]["false_spread"]["chances"]
    assert reached == chances  # blind adoption spreads every false accept
    for arm, rs in rows.items():
        cuts = sum(c["true_rpv_rel"] < -sw.FD_TOLERANCE for r in rs for c in r["changes"])
        assert summary[arm]["revenue_harms"] == cuts
    goal = sw.targets(summary, rows)
    assert isinstance(goal["met"], bool) and goal["verify_minus_blind"][0] is not None
    assert goal["verify_minus_blind_rpv"][0] is not None
