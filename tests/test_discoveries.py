"""Discoveries that travel: export a campaign's accepted changes, import them elsewhere, and let that
campaign's own judge test them (real marketing campaigns through the CLI, toy campaigns through the loop)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.discoveries import bundle_text, content_hash
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import Proposal, ProposalContext
from ledgerlab.core.state import CampaignState, fold
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.testing import KNOBS, ScriptedProposer, Step, ToyDomain

runner = CliRunner(env={"COLUMNS": "200"})
SOURCE_SEED = 3  # a short marketing campaign (15 hypotheses) whose knob proposer gets one change accepted


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_error(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output, result.output
    assert all(w in result.output for w in words), result.output


def ledger(folder: Path) -> Path:
    return folder / ".ledgerlab" / "ledger.duckdb"


def states(folder: Path) -> list[CampaignState]:
    """Every campaign of the folder's ledger, folded, in the order they began."""
    with DuckDBLedger(ledger(folder)) as store:
        return [fold(cid, store.read(cid)) for cid in store.campaign_ids()]


def event_count(folder: Path) -> int:
    if not ledger(folder).exists():
        return 0
    with DuckDBLedger(ledger(folder)) as store:
        return store.head()[0]


# ------------------------------------------------------------------------------------------ marketing


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished marketing campaign with at least one accepted change."""
    folder = tmp_path_factory.mktemp("source")
    result = cli("run", "marketing", "--dir", str(folder), "--max-hypotheses", "15", "--seed", str(SOURCE_SEED), "-q")
    assert result.exit_code == 0, result.output
    accepted = [h for h in states(folder)[-1].hypotheses.values() if h.status == "accepted"]
    assert accepted, "the source campaign accepted nothing: choose another SOURCE_SEED"
    return folder


@pytest.fixture(scope="module")
def bundle(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "shop.json"
    result = cli("export", "--format", "discoveries", "--out", str(out), "--dir", str(source))
    assert result.exit_code == 0, result.output
    return out


def test_the_bundle_holds_each_accepted_change_with_its_evidence_and_provenance(source: Path, bundle: Path) -> None:
    data = json.loads(bundle.read_text())
    body = data["body"]
    assert data["format"] == "ledgerlab-discoveries" and data["content_hash"] == content_hash(body)
    state = states(source)[-1]
    accepted = [h for h in state.hypotheses.values() if h.status == "accepted"]
    assert [d["hypothesis_id"] for d in body["discoveries"]] == [h.hypothesis_id for h in accepted]
    found = body["discoveries"][0]
    assert found["diff"] and found["changes"] and found["rationale"]
    assert found["verdict"]["decision"] == "accept" and found["verdict"]["ci_low"] is not None
    assert found["confirmed"] is None or {"effect", "ci_low", "ci_high", "method"} <= set(found["confirmed"])
    assert {"HypothesisProposed", "CandidateCreated", "VerdictReached", "IncumbentChanged"} <= set(found["events"])
    assert body["domain"]["name"] == "marketing" and body["domain"]["run_design"]["factorial"] is True
    assert body["source"]["campaign_id"] == state.campaign_id
    with DuckDBLedger(ledger(source)) as store:
        assert body["source"]["head"] == dict(zip(("seq", "hash"), store.head()))
    checkpoint = body["source"]["checkpoint"]
    assert checkpoint["signature_valid"] and checkpoint["covers_discoveries"]


def test_imports_are_tested_by_this_campaigns_judge_on_its_own_runs(source: Path, bundle: Path,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
    first = cli("import", str(bundle), "--dir", str(target))
    assert first.exit_code == 0 and "queued" in first.output and "`ledgerlab run --dir" in first.output, first.output
    again = cli("import", str(bundle), "--dir", str(target))  # the same bundle twice queues once
    assert again.exit_code == 0 and "already imported" in again.output and "0 discoveries queued" in again.output
    pending = states(target)[-1]
    count = len(json.loads(bundle.read_text())["body"]["discoveries"])
    assert pending.started is None and len(pending.imports) == count and len(pending.pending_imports()) == count

    result = cli("run", "--dir", str(target), "--max-hypotheses", str(count + 1), "--seed", "7", "-q")
    assert result.exit_code == 0, result.output
    state = states(target)[-1]
    assert state.campaign_id == pending.campaign_id and not state.pending_imports()
    src = states(source)[-1].campaign_id
    ordered = sorted(state.hypotheses.values(), key=lambda h: h.number)
    imported = ordered[:count]  # proposed before the proposer's own ideas
    assert all(h.agent == f"imported:{src}" and h.hypothesis_id in state.imports for h in imported)
    assert ordered[count].agent == "agent-0"
    for h in imported:
        assert h.parent_candidate_id == state.started.baseline_candidate_id  # type: ignore[union-attr]
        assert h.verdict is not None, "the judge decided it, on this campaign's runs"
        runs = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id and r.role == "candidate"]
        assert runs and all(r.status == "finished" for r in runs)

    listing = cli("hypotheses", "--dir", str(target))
    assert f"imported from {src} #" in listing.output, listing.output
    shown = cli("show", "1", "--dir", str(target))
    assert "imported from" in shown.output and "provenance" in shown.output and "signed checkpoint" in shown.output
    # The first import stakes half of W0 = 0.5, and meets the lax futility bound of a stream at its start.
    assert "0.2 (the imports' stream, investing; look-1 futility at p > 0.9)" in shown.output
    own = cli("show", str(count + 1), "--dir", str(target)).output
    assert "(the campaign's own stream, fdr)" in own, own
    logged = cli("log", "--type", "DiscoveryImported", "--dir", str(target))
    assert logged.exit_code == 0 and "DiscoveryImported" in logged.output
    assert "DiscoveryImported" in cli("schema").output


def test_an_exported_bundle_is_signed_and_trust_picks_whose_bundles_are_imported(
        bundle: Path, source: Path, tmp_path: Path, session_key_dir: Path) -> None:
    from ledgerlab.storage.signing import load_or_create_key

    mine = load_or_create_key(session_key_dir / "signing_key")  # the key the module's fixtures exported with
    other = load_or_create_key(tmp_path / "elsewhere" / "signing_key").public_key
    data = json.loads(bundle.read_text())
    assert data["signature"]["public_key"] == mine.public_key and data["signature"]["key_id"] == mine.key_id

    def imported(target: Path, *args: str) -> Any:
        assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
        return cli("import", *args, "--dir", str(target))

    def nothing_recorded(target: Path) -> bool:
        return not ledger(target).exists() or not any(s.imports for s in states(target))

    refused = imported(tmp_path / "t1", str(bundle), "--trust", other)
    assert refused.exit_code != 0 and f"signed by key {mine.key_id}, which is not trusted" in refused.output
    assert "Traceback" not in refused.output and nothing_recorded(tmp_path / "t1")
    taken = imported(tmp_path / "t2", str(bundle), "--trust", other, "--trust", mine.public_key.upper())
    assert taken.exit_code == 0 and f"bundle signed by key {mine.key_id}" in taken.output, taken.output
    assert all(i.provenance["signer"] == mine.public_key for i in states(tmp_path / "t2")[-1].imports.values())

    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps({k: v for k, v in data.items() if k != "signature"}))
    assert "is not signed" in imported(tmp_path / "t3", str(unsigned), "--trust", mine.public_key).output
    assert imported(tmp_path / "t4", str(unsigned)).exit_code == 0  # without --trust: the content hash only
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**data, "signature": {**data["signature"], "public_key": other}}))
    said = imported(tmp_path / "t5", str(forged)).output
    assert "signature that does not verify" in said and nothing_recorded(tmp_path / "t5")
    from_folder = imported(tmp_path / "t6", str(source), "--trust", mine.public_key).output
    assert "checks a bundle file's signature" in from_folder and "ledgerlab verify --trust" in from_folder
    assert "64 hex digits" in imported(tmp_path / "t7", str(bundle), "--trust", "nope").output


def test_a_tampered_bundle_is_refused_and_nothing_is_recorded(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
    data = json.loads(bundle.read_text())
    data["body"]["discoveries"][0]["confirmed"] = {"effect": 0.5, "ci_low": 0.4, "ci_high": 0.6, "method": "made up"}
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    one_line_error(cli("import", str(forged), "--dir", str(target)), "integrity", "changed after export")
    cut = tmp_path / "cut.json"
    cut.write_text(bundle.read_text()[:300])
    one_line_error(cli("import", str(cut), "--dir", str(target)), "not a discoveries bundle")
    deep = tmp_path / "deep.json"  # JSON nested past the parser's recursion limit: no bundle is
    deep.write_text('{"format": "ledgerlab-discoveries", "version": 1, "body": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_error(cli("import", str(deep), "--dir", str(target)), "nested too deep")
    head = '{"format": "ledgerlab-discoveries", "version": 1, "content_hash": "x", "body": '
    for text, says in ((head + '{"a": "\\ud800"}}', "not valid Unicode"), (head + "1" * 5000 + "}", "not JSON")):
        odd = tmp_path / "odd.json"  # a lone surrogate; an integer past Python's digit limit
        odd.write_text(text)
        one_line_error(cli("import", str(odd), "--dir", str(target)), says)
    os.mkfifo(tmp_path / "fifo.json")  # read the usual way, it would block until a writer came
    one_line_error(cli("import", str(tmp_path / "fifo.json"), "--dir", str(target)), "not a regular file")
    # A rehashed body whose signed checkpoint was edited is refused too.
    data = json.loads(bundle.read_text())
    data["body"]["source"]["checkpoint"]["head_seq"] += 1
    resealed = tmp_path / "resealed.json"
    resealed.write_text(bundle_text(data["body"]))
    one_line_error(cli("import", str(resealed), "--dir", str(target)), "signature does not verify")
    assert event_count(target) == 0


def test_a_bundle_of_another_domain_is_refused(bundle: Path, tmp_path: Path) -> None:
    body = json.loads(bundle.read_text())["body"]
    body["domain"]["name"] = "ml_training"
    other = tmp_path / "ml.json"
    other.write_text(bundle_text(body))  # intact, but of another domain
    target = tmp_path / "target"
    assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
    one_line_error(cli("import", str(other), "--dir", str(target)), "domain 'ml_training'", "'marketing'")
    assert event_count(target) == 0
    one_line_error(cli("import", str(bundle), "--dir", str(tmp_path / "nothing")), "not a ledgerlab project")


def test_import_straight_from_another_projects_folder(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
    result = cli("import", str(source), "--dir", str(target))
    assert result.exit_code == 0 and "queued in campaign" in result.output, result.output
    result = cli("import", str(ledger(source)), "--dir", str(target))  # the ledger file itself: same changes
    assert result.exit_code == 0 and "already imported" in result.output, result.output
    assert len(states(target)[-1].imports) == len([h for h in states(source)[-1].hypotheses.values()
                                                   if h.status == "accepted"])


# ------------------------------------------------------------------------------------------ toy domain


def toy_campaign(store: Any, tmp_path: Path, script: list[Step], campaign_id: str | None = None) -> Campaign:
    domain = ToyDomain(seed_noise=0.0)  # no noise shared by a seed: a one-run look is already decisive
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 10})
    return Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer(script))],
                    executor=LocalExecutor(domain), runs_dir=tmp_path / "runs", campaign_id=campaign_id)


def y_without_changes(context: ProposalContext, sink: Any) -> Proposal:
    """Y = 5 as an edit with no knob changes recorded (what an LLM's patch looks like)."""
    files = write_knob(dict(context.incumbent_files), KNOBS[1], 5)
    return Proposal(rationale="set Y to 5 by hand", files=files)


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy campaign's bundle: X = 5 with its knob change, then Y = 5 as a bare diff made on X = 5."""
    source = tmp_path_factory.mktemp("toy-source")
    with DuckDBLedger(ledger(source)) as store:
        state = toy_campaign(store, source / "s", [{"X": 5.0}, y_without_changes]).run()
    assert [h.status for h in state.hypotheses.values()] == ["accepted", "accepted"]
    out = source / "toy.json"
    assert cli("export", "--format", "discoveries", "--out", str(out), "--dir", str(source)).exit_code == 0
    return out


def test_toy_patches_that_no_longer_apply_are_re_expressed_or_rejected(toy_bundle: Path, tmp_path: Path) -> None:
    out, target = toy_bundle, tmp_path / "target"
    with DuckDBLedger(ledger(target)) as store:  # this campaign moved Y to 5 first, then paused
        camp = toy_campaign(store, tmp_path / "t", [{"Y": 5}])
        camp.on_event = lambda row: camp.request_stop("test") if row.type == "IncumbentChanged" else None
        assert camp.run().status == "paused"
    result = cli("import", str(out), "--dir", str(target))
    assert result.exit_code == 0 and "2 discoveries queued" in result.output and "resume" in result.output, \
        result.output
    assert cli("import", str(out), "--dir", str(target)).output.count("already imported") == 2

    with DuckDBLedger(ledger(target)) as store:
        state = toy_campaign(store, tmp_path / "t", [], campaign_id=camp.campaign_id).run()
    assert state.status == "finished"
    own, x5, y5 = sorted(state.hypotheses.values(), key=lambda h: h.number)
    assert own.agent == "agent-0" and own.status == "accepted"
    # X = 5's diff has "Y = 3" in its context: re-expressed through its knob change, on this incumbent.
    assert x5.agent.startswith("imported:") and "re-expressed through its knob changes" in x5.rationale
    assert x5.parent_candidate_id == own.candidate_id and x5.changes == {"X": 5.0}
    assert "-X = 2.0\n+X = 5\n" in x5.diff and "Y" not in x5.diff.replace(" Y = 5", "")
    assert x5.verdict is not None and x5.status == "accepted"  # tested here: loss 0.45 -> 0.05
    # The imported Y = 5 has no knob changes and its diff expects Y = 3: rejected, saying why.
    assert y5.status == "patch_rejected" and "no knob changes" in y5.reason and "does not apply" in y5.reason
    assert not any(r.hypothesis_id == y5.hypothesis_id for r in state.runs.values())


def test_an_empty_patch_is_re_expressed_through_its_knob_changes() -> None:
    from ledgerlab.core.discoveries import express
    from ledgerlab.testing import ToyDomain

    domain = ToyDomain()
    base = domain.baseline()
    item = ev.DiscoveryImported(hypothesis_id="h-1", source_campaign_id="c-src", source_hypothesis_id="h-0",
                                domain="toy", rationale="X = 5", diff="", changes={"X": 5.0})
    files, note, reason = express(item, base, domain)
    assert files is not None and files != base and "re-expressed" in note and reason == ""
    files, _, reason = express(item.model_copy(update={"changes": {}}), base, domain)
    assert files is None and "the patch is empty" in reason and "no knob changes" in reason


def test_queued_imports_start_only_a_campaign_of_their_domain(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert cli("init", "marketing", "--dir", str(target)).exit_code == 0
    assert cli("import", str(bundle), "--dir", str(target)).exit_code == 0
    before = event_count(target)
    one_line_error(cli("run", "ml_training", "--dir", str(target)), "imported for domain marketing", "--new")
    assert event_count(target) == before


def test_imports_wait_for_the_budget_and_the_finish_says_so(toy_bundle: Path, tmp_path: Path) -> None:
    from ledgerlab.core.campaign import open_campaign_id

    target = tmp_path / "target"
    target.mkdir()
    (target / "ledgerlab.toml").write_text('[domain]\nname = "toy"\n')  # a fresh project of the toy domain
    result = cli("import", str(toy_bundle), "--dir", str(target))
    assert result.exit_code == 0 and "2 discoveries queued" in result.output and "`ledgerlab run" in result.output
    with DuckDBLedger(ledger(target)) as store:
        camp = toy_campaign(store, tmp_path / "t", [{"Y": 4}], campaign_id=open_campaign_id(store))
        camp.config = camp.config.merged({"budgets.max_hypotheses": 1})
        state = camp.run()
    (only,) = state.hypotheses.values()  # the first import: its diff applies to the baseline as it is
    assert only.agent.startswith("imported:") and only.verdict is not None and "re-expressed" not in only.rationale
    assert state.finish_reason == "max_hypotheses" and len(state.pending_imports()) == 1
    with DuckDBLedger(ledger(target)) as store:
        finished = [row.event() for row in store.read(state.campaign_id, types=["CampaignFinished"])]
    assert "1 imported discovery(ies) left untested" in finished[0].detail  # type: ignore[attr-defined]


def _first_level(alpha: float, flat: int) -> float:
    """ADDIS's level with nothing ahead in its stream: (τ − λ)·w0·alpha·γ_1, γ ∝ min(1, flat/j)² (defaults)."""
    norm = sum(min(1.0, flat / j) ** 2 for j in range(1, 200_000)) + flat**2 / 200_000  # + the tail ≈ ∫
    return (0.7 - 0.05) * 0.9 * alpha / norm


@pytest.mark.parametrize(("policy", "import_alpha"), [("investing", 0.1), ("fdr", 0.05), ("investing", 0.0)])
def test_imports_are_tested_in_a_stream_of_their_own(toy_bundle: Path, tmp_path: Path, policy: str,
                                                     import_alpha: float) -> None:
    from ledgerlab.core.campaign import open_campaign_id

    target = tmp_path / "target"
    target.mkdir()
    (target / "ledgerlab.toml").write_text('[domain]\nname = "toy"\n')
    assert cli("import", str(toy_bundle), "--dir", str(target)).exit_code == 0
    domain = ToyDomain(seed_noise=0.0)
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 3},
                            judge={"alpha_policy": "fdr", "import_alpha_policy": policy, "import_alpha": import_alpha})
    with DuckDBLedger(ledger(target)) as store:
        state = Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer([{"MODE": "fancy"}], consume=True))],
                         executor=LocalExecutor(domain), runs_dir=tmp_path / "runs",
                         campaign_id=open_campaign_id(store)).run()
    ordered = sorted(state.hypotheses.values(), key=lambda h: h.number)
    x5, y5 = [h for h in ordered if h.hypothesis_id in state.imports]
    (own,) = [h for h in ordered if h.agent == "agent-0"]
    assert x5.status == y5.status == "accepted", (x5.reason, y5.reason)
    levels = [h.verdict.details["alpha"] for h in (x5, y5, own)]  # type: ignore[union-attr]
    first_own = _first_level(0.1, 20)
    if not import_alpha:
        # One stream, as before v4: the imports meet the campaign's first level, and x5's accept raises the level
        # of everything after it, the own idea included.
        assert levels == pytest.approx([first_own, first_own / 0.9, first_own / 0.9], rel=1e-6)
    elif policy == "investing":
        # x5 stakes half of the initial wealth 0.5: 0.25 / 1.25. y5 starts after x5's accept, which earned the
        # stream 0.1: half of 0.6 staked. The own idea meets its own stream's first level.
        assert levels == pytest.approx([0.2, 0.3 / 1.3, first_own], rel=1e-9)
    else:
        # Each stream starts at its own first level; y5 starts after x5's accept, which returns wealth to the
        # imports' stream (W0·γ_1 + (alpha − W0)·γ_1 = alpha·γ_1). The campaign's own idea, proposed after that
        # accept, meets its own stream's first level: an import neither spends nor earns the own ideas' wealth.
        first_import = _first_level(0.05, 2)
        assert levels == pytest.approx([first_import, first_import / 0.9, first_own], rel=1e-6)


def _comment_diff(k: int) -> str:
    """A change that does nothing: a comment line added to the toy's params.py."""
    return ('diff --git a/params.py b/params.py\n--- a/params.py\n+++ b/params.py\n@@ -2,2 +2,3 @@\n Y = 3\n'
            f' MODE = "plain"\n+# tuned {k}\n')


def test_a_flood_of_useless_imports_drains_the_imports_wealth(toy_bundle: Path, tmp_path: Path) -> None:
    from ledgerlab.core.campaign import open_campaign_id
    from ledgerlab.core.state import NOT_TESTS

    # A forged bundle: ten "accepted" changes that do nothing. Its content hash is recomputed (anyone can), so
    # the import takes it; only the importer's judge stands between the flood and its incumbent.
    body = json.loads(toy_bundle.read_text())["body"]
    template = body["discoveries"][0]
    body["discoveries"] = [{**template, "hypothesis_id": f"h-forged-{k}", "number": k + 1, "changes": {},
                            "rationale": f"forged {k}", "diff": _comment_diff(k)} for k in range(10)]
    forged = tmp_path / "forged.json"
    forged.write_text(bundle_text(body))
    target = tmp_path / "target"
    target.mkdir()
    (target / "ledgerlab.toml").write_text('[domain]\nname = "toy"\n')
    assert "10 discoveries queued" in cli("import", str(forged), "--dir", str(target)).output
    domain = ToyDomain()  # noise on every run: a null change's runs differ from the incumbent's by chance
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 11}, judge={"alpha_policy": "fdr"})
    with DuckDBLedger(ledger(target)) as store:
        camp = Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer([{"X": 6.0}], consume=True))],
                        executor=LocalExecutor(domain), runs_dir=tmp_path / "runs", campaign_id=open_campaign_id(store))
        state = camp.run()
    tested = sorted((h for h in state.hypotheses.values() if h.hypothesis_id in state.imports
                     and h.verdict is not None and h.verdict.test not in NOT_TESTS), key=lambda h: h.alpha_index)
    assert len(tested) == 10
    levels = [h.verdict.details["alpha"] for h in tested]  # type: ignore[union-attr]
    accepted = sum(h.status == "accepted" for h in tested)
    assert levels[0] == pytest.approx(0.2) and accepted == 0
    # Tested one at a time, each failure halves the wealth (the price of a level α is α/(1 − α) = half of it):
    # 0.5, 0.25, 0.125… so the levels fall geometrically and sum to less than W0 = 0.5 whatever their number.
    expected = [0.5 * 0.5**k * 0.5 / (1 + 0.5 * 0.5**k * 0.5) for k in range(10)]
    assert levels == pytest.approx(expected, rel=1e-9)
    assert sum(a / (1 - a) for a in levels) < 0.5
    # Only the first imports get the lax futility bound of a stream that pays off; the flood's later ones are
    # dropped at p > 0.5 or near it, as before v6, so a flood costs few runs per useless import.
    bounds = [camp._judge_of(h).settings.futility_p for h in tested]  # type: ignore[attr-defined]
    assert bounds[0] == pytest.approx(0.9) and all(a > b for a, b in zip(bounds, bounds[1:])) and bounds[-1] < 0.51
    own = [h for h in state.hypotheses.values() if h.agent == "agent-0"]
    assert [h.status for h in own] == ["accepted"]  # the campaign's own idea still got through, at its own level


def test_an_import_this_campaign_rejected_is_re_tested_on_fresh_seeds(toy_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    domain = ToyDomain(noise=3.0, seed_noise=0.0)  # so noisy that X = 5 (a real gain) fails its first test here

    def campaign(store: Any, script: list[Step], hypotheses: int, campaign_id: str | None = None) -> Campaign:
        # No seed rotation: every hypothesis's replicate i would be on the incumbent's seed i (as on A/B designs).
        config = CampaignConfig(domain="toy", budgets={"max_hypotheses": hypotheses}, judge={"incumbent_seeds": 0})
        return Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer(script, consume=True))],
                        executor=LocalExecutor(domain), runs_dir=tmp_path / "runs", campaign_id=campaign_id)

    with DuckDBLedger(ledger(target)) as store:
        camp = campaign(store, [{"X": 5.0}], 2)
        camp.on_event = lambda row: camp.request_stop("test") if row.type == "VerdictReached" else None
        assert camp.run().status == "paused"
    assert cli("import", str(toy_bundle), "--dir", str(target)).exit_code == 0
    with DuckDBLedger(ledger(target)) as store:
        state = campaign(store, [], 3, campaign_id=camp.campaign_id).run()
    own, x5, _ = sorted(state.hypotheses.values(), key=lambda h: h.number)
    assert own.agent == "agent-0" and own.status == "rejected", own.reason
    # The same candidate, imported: another campaign's accept earns it a second test, on seeds the first did not
    # use (a seed would replay the same data), decided by the imports' stream.
    assert x5.hypothesis_id in state.imports and x5.candidate_id == own.candidate_id
    assert x5.status in ("accepted", "rejected") and x5.verdict is not None, x5.reason
    seeds = {h: {r.seed for r in state.runs.values() if r.hypothesis_id == h and r.role == "candidate"}
             for h in (own.hypothesis_id, x5.hypothesis_id)}
    assert seeds[own.hypothesis_id] and seeds[x5.hypothesis_id]
    assert not seeds[own.hypothesis_id] & seeds[x5.hypothesis_id]


def test_an_import_that_went_stale_is_tested_again_on_the_new_incumbent(toy_bundle: Path, tmp_path: Path) -> None:
    from ledgerlab.core.campaign import open_campaign_id

    target = tmp_path / "target"
    domain = ToyDomain(seed_noise=0.0)

    def campaign(store: Any, script: list[Step], campaign_id: str | None = None) -> Campaign:
        config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 4})
        # Two slots: an import is tested beside the campaign's own idea, so the own idea's accept can make the
        # import's test stale (its incumbent is gone) before the import reaches a look.
        return Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer(script, consume=True))],
                        executor=LocalExecutor(domain, workers=2), runs_dir=tmp_path / "runs", campaign_id=campaign_id)

    with DuckDBLedger(ledger(target)) as store:  # the own idea Y = 5 is half-way through its test
        camp = campaign(store, [{"Y": 5}])
        finished: list[str] = []

        def pause_after_two_runs(row: ev.StoredEvent) -> None:
            if row.type == "RunFinished":
                finished.append(row.type)
                if len(finished) == 3:  # the incumbent's first run and two of the candidate's
                    camp.request_stop("test")

        camp.on_event = pause_after_two_runs
        assert camp.run().status == "paused"
    assert cli("import", str(toy_bundle), "--dir", str(target)).exit_code == 0
    with DuckDBLedger(ledger(target)) as store:
        state = campaign(store, [], campaign_id=open_campaign_id(store)).run()
        rows = list(store.read(state.campaign_id))
    own = next(h for h in state.hypotheses.values() if h.agent == "agent-0")
    assert own.status == "accepted", own.reason
    x5 = [h for h in state.hypotheses.values() if h.hypothesis_id in state.imports and h.changes == {"X": 5.0}]
    assert [h.verdict.test if h.verdict else None for h in x5][:1] == ["stale"], [h.reason for h in x5]
    first, retry = x5[0], x5[1]
    item = state.imports[retry.hypothesis_id]
    assert item.retry_of == first.hypothesis_id and item.source_hypothesis_id == state.imports[first.hypothesis_id].source_hypothesis_id
    # The retry was recorded with the stale verdict, in the same append (a kill -9 between them cannot lose it).
    seq_of = {(row.type, row.event().hypothesis_id): row.seq for row in rows
              if row.type in ("VerdictReached", "DiscoveryImported")}  # type: ignore[attr-defined]
    assert seq_of[("DiscoveryImported", retry.hypothesis_id)] == seq_of[("VerdictReached", first.hypothesis_id)] + 1
    assert retry.parent_candidate_id == own.candidate_id and retry.status == "accepted", retry.reason
    assert f"#{first.number}" in retry.rationale

