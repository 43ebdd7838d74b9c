"""`ledgerlab run --share DIR`: campaigns that publish their accepts to a folder and import each other's while
they run (core/sharing.py). Toy campaigns through the loop, in-process (fast); three marketing campaigns as
separate `ledgerlab run` processes sharing one folder, one of them killed with -9 and restarted (slow)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import ledgerlab
from ledgerlab.core import discoveries
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.sharing import ShareFolder, bundle_name, open_share
from ledgerlab.core.state import CampaignState
from ledgerlab.errors import LedgerlabError
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.testing import ScriptedProposer, Step, ToyDomain
from tests.host_processes import Runner, until

# Files no runner may choke on: not JSON, a bundle cut short (what a writer without the rename leaves), a
# bundle whose body was edited, JSON nested past the parser's recursion limit, and names a runner must not even
# read (a temporary file, another suffix).
JUNK = {"broken.json": "{not json", "half.json": '{"format": "ledgerlab-discoveries", "version": 1, "content_ha',
        "deep.json": '{"format": "ledgerlab-discoveries", "version": 1, "body": ' + "[" * 100_000 + "]" * 100_000 + "}"}


def plant_junk(share: Path) -> None:
    share.mkdir(parents=True, exist_ok=True)
    for name, text in JUNK.items():
        (share / name).write_text(text)
    (share / ".c-x-000000000001.json.123.tmp").write_text("{")
    (share / "notes.txt").write_text("not a bundle")


def warnings_about(lines: list[str], name: str) -> int:
    return sum(name in line for line in lines)


# ------------------------------------------------------------------------------------------ toy domain


def toy(store: Any, folder: Path, script: list[Step], share: ShareFolder) -> Campaign:
    domain = ToyDomain(seed_noise=0.0)  # no noise shared by a seed: one run per look decides
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": 4})
    return Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer(script, consume=True))],
                    executor=LocalExecutor(domain), runs_dir=folder / "runs", share=share)


def test_toy_campaigns_share_through_a_folder_and_re_test_what_they_import(tmp_path: Path) -> None:
    share = tmp_path / "share"
    plant_junk(share)
    said: list[str] = []
    with DuckDBLedger(tmp_path / "a.duckdb") as store:
        a = toy(store, tmp_path / "a", [{"X": 5.0}], ShareFolder(share, said.append)).run()
        published = {p.name: p.stat().st_mtime_ns for p in share.glob("c-*.json")}
        ShareFolder(share).publish(a, store)  # a restarted runner: what is in the folder is not written again
        assert {p.name: p.stat().st_mtime_ns for p in share.glob("c-*.json")} == published
    assert [h.status for h in a.hypotheses.values()] == ["accepted"] and not a.imports  # junk imports nothing
    accept = store_seq(tmp_path / "a.duckdb", a.campaign_id, "VerdictReached")
    assert sorted(p.name for p in share.glob("c-*.json")) == [bundle_name(a.campaign_id, accept)]
    assert {warnings_about(said, name) for name in JUNK} == {1}  # once each, over all the loop's scans
    assert len(said) == len(JUNK) and not any("notes.txt" in line or ".tmp" in line for line in said)

    heard: list[str] = []
    with DuckDBLedger(tmp_path / "b.duckdb") as store:
        b = toy(store, tmp_path / "b", [{"Y": 5}], ShareFolder(share, heard.append)).run()
    imported = [h for h in b.hypotheses.values() if h.agent == f"imported:{a.campaign_id}"]
    assert len(b.imports) == 1 and [h.number for h in imported] == [1]  # queued before its own idea
    runs = [r for r in b.runs.values() if r.hypothesis_id == imported[0].hypothesis_id and r.role == "candidate"]
    assert runs and imported[0].verdict is not None  # re-tested on b's own runs, judged by b's judge
    assert (share / bundle_name(a.campaign_id, accept)).exists()
    mine = sorted(p.name for p in share.glob(f"{b.campaign_id}-*.json"))
    own = [h for h in b.hypotheses.values() if h.status == "accepted" and h.proposer != "imported"]
    assert len(mine) == len(own) == 1  # b published its own accept, not the import (a published that one)

    # A restarted runner (a new ShareFolder, no memory) reads the imports from its ledger: nothing twice.
    def append(*events: Any) -> None:
        raise AssertionError(f"imported again: {events}")

    ShareFolder(share).scan(b, "toy", append)  # a's bundle is in b's ledger, b's own is b's


def test_a_bundle_of_another_domain_is_skipped_with_one_warning(tmp_path: Path) -> None:
    share = tmp_path / "share"
    with DuckDBLedger(tmp_path / "a.duckdb") as store:
        a = toy(store, tmp_path / "a", [{"X": 5.0}], open_share(share)).run()
    said: list[str] = []
    folder = ShareFolder(share, said.append)
    for _ in range(3):
        folder.scan(CampaignState(campaign_id="c-other"), "marketing", lambda *e: None)
    assert len(said) == 1 and "domain 'toy'" in said[0] and a.campaign_id in said[0]


def test_a_file_larger_than_any_bundle_is_skipped_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = tmp_path / "share"
    with DuckDBLedger(tmp_path / "a.duckdb") as store:
        a = toy(store, tmp_path / "a", [{"X": 5.0}], open_share(share)).run()
    (published,) = share.glob("c-*.json")
    monkeypatch.setattr(discoveries, "MAX_BUNDLE_BYTES", published.stat().st_size - 1)  # 64 MiB in earnest
    said: list[str] = []
    imported: list[Any] = []
    ShareFolder(share, said.append).scan(CampaignState(campaign_id="c-other"), "toy", lambda *e: imported.extend(e))
    assert not imported and len(said) == 1 and "larger than" in said[0] and published.name in said[0]
    monkeypatch.undo()
    ShareFolder(share, said.append).scan(CampaignState(campaign_id="c-other"), "toy", lambda *e: imported.extend(e))
    assert [e.source_campaign_id for e in imported] == [a.campaign_id]  # the same file, within the cap


def test_publishing_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    share, victim = tmp_path / "share", tmp_path / "victim.txt"
    victim.write_text("the runner's user's file")
    with DuckDBLedger(tmp_path / "a.duckdb") as store:
        a = toy(store, tmp_path / "a", [{"X": 5.0}], open_share(share)).run()
        (published,) = share.glob("c-*.json")
        published.unlink()
        # The temporary name an earlier version wrote through, which anyone who can write here could guess.
        (share / f".{published.name}.{os.getpid()}.tmp").symlink_to(victim)
        ShareFolder(share).publish(a, store)
    assert victim.read_text() == "the runner's user's file"
    assert published.is_file() and not published.is_symlink()
    assert published.stat().st_mode & 0o044 == 0o044  # readable by the other users' campaigns


def test_a_fifo_in_the_folder_is_skipped_without_blocking(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    os.mkfifo(share / "c-x-000000000001.json")  # opened for reading the usual way, it blocks until a writer comes
    said: list[str] = []
    for _ in range(2):
        ShareFolder(share, said.append).scan(CampaignState(campaign_id="c-other"), "toy", lambda *e: None)
    assert len(said) == 2 and all("not a regular file" in line for line in said)  # once per runner


def test_published_bundles_are_signed_and_trust_picks_whose_are_imported(tmp_path: Path) -> None:
    from ledgerlab.storage.signing import load_or_create_key

    share = tmp_path / "share"
    with DuckDBLedger(tmp_path / "a.duckdb") as store:
        a = toy(store, tmp_path / "a", [{"X": 5.0}], open_share(share)).run()
    (published,) = share.glob("c-*.json")
    mine = load_or_create_key()  # the runner's key: the one its checkpoints use (LEDGERLAB_KEY_DIR here)
    assert json.loads(published.read_text())["signature"]["public_key"] == mine.public_key
    other = load_or_create_key(tmp_path / "elsewhere" / "signing_key").public_key
    got: list[Any] = []
    said: list[str] = []
    untrusting = ShareFolder(share, said.append, trusted=frozenset({other}))
    for _ in range(2):
        untrusting.scan(CampaignState(campaign_id="c-other"), "toy", got.extend)
    assert not got and len(said) == 1 and f"signed by key {mine.key_id}, which is not trusted" in said[0]
    ShareFolder(share, trusted=frozenset({other, mine.public_key})).scan(CampaignState(campaign_id="c-other"), "toy",
                                                                        lambda *e: got.extend(e))
    assert [item.source_campaign_id for item in got] == [a.campaign_id]
    assert got[0].provenance["signer"] == mine.public_key


def test_trust_without_a_share_folder_is_a_one_line_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ledgerlab.cli.main import app

    result = CliRunner().invoke(app, ["run", "toy", "--dir", str(tmp_path / "p"), "--trust", "ab" * 32])
    assert result.exit_code == 2 and "give --share DIR too" in result.output
    assert "Traceback" not in result.output


def test_a_share_path_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(LedgerlabError, match="--share"):
        open_share(tmp_path / "f")
    shown = Runner(tmp_path / "shop", "run", "marketing", "--max-hypotheses", "1", "--share", str(tmp_path / "f"))
    assert shown.wait() == 2 and shown.output.startswith("error: --share ") and len(shown.lines) == 1, shown.output
    assert not (tmp_path / "shop" / ".ledgerlab").exists()  # refused before the campaign's folder was made


def store_seq(path: Path, campaign_id: str, kind: str) -> int:
    with DuckDBLedger(path) as store:
        return [row.seq for row in store.read(campaign_id) if row.type == kind][-1]


# ------------------------------------------------------------------------------------------ marketing

SEEDS = (3, 7, 8)  # three markets' worth of visitors, each campaign with its own ideas


def sql(folder: Path, query: str) -> list[dict[str, Any]]:
    """A read-only query, as another process reads a running campaign's ledger (through its socket)."""
    try:
        return ledgerlab.open(folder).sql(query).records()
    except LedgerlabError:
        return []  # no ledger yet


def campaign_of(folder: Path) -> str | None:
    rows = sql(folder, "select campaign_id from campaigns")
    return rows[0]["campaign_id"] if rows else None


def imports_tested(folder: Path, sources: list[str]) -> bool:
    """Whether the campaign in `folder` has decided at least one import from each of `sources`."""
    rows = sql(folder, "select agent from hypotheses where agent like 'imported:%' and "
                       "status in ('accepted', 'rejected', 'patch_rejected')")
    return {f"imported:{s}" for s in sources} <= {r["agent"] for r in rows}


def share_run(folder: Path, share: Path, seed: int) -> Runner:
    # greedy: every campaign accepts early and often, whatever the others' imports do to its path
    return Runner(folder, "run", "marketing", "--seed", str(seed), "--judge", "greedy", "--max-hypotheses", "2000",
                  "--share", str(share))


def stop(runner: Runner) -> None:
    """SIGTERM: the runner pauses cleanly, publishing its last accepts."""
    if runner.proc.poll() is None:
        runner.proc.send_signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.output[-2000:]


@pytest.mark.slow
def test_marketing_runners_share_while_they_run_and_a_restart_imports_nothing_twice(tmp_path: Path) -> None:
    """16 s on a quiet machine, 45 s on a loaded one; the toy test above covers publishing, importing, junk and
    the ledger as memory in one process, fast."""
    share = tmp_path / "share"
    plant_junk(share)
    folders = [tmp_path / f"shop{k}" for k in range(len(SEEDS))]
    runners = [share_run(folder, share, seed) for folder, seed in zip(folders, SEEDS)]
    try:
        ids = [until(f"{f.name} starts", lambda f=f: campaign_of(f), r.proc) for f, r in zip(folders, runners)]
        for k, (folder, runner) in enumerate(zip(folders, runners)):
            others = [cid for cid in ids if cid != ids[k]]
            until(f"{folder.name} tests imports from {others}", lambda: imports_tested(folder, others), runner.proc)

        # kill -9 the first runner; restarted, it reads the folder again and imports nothing it has
        os.killpg(runners[0].proc.pid, signal.SIGKILL)
        runners[0].wait()
        first = runners[0]
        runners[0] = Runner(folders[0], "run", "--share", str(share))
        resumed = until("the restart resumes", lambda: sql(
            folders[0], "select max(seq) as seq from events where type = 'CampaignResumed'")[0]["seq"], runners[0].proc)
        until("the restart decides a hypothesis", lambda: sql(
            folders[0], f"select seq from events where type = 'VerdictReached' and seq > {resumed}"), runners[0].proc)
    finally:
        for runner in runners:
            stop(runner)

    for k, (folder, cid) in enumerate(zip(folders, ids)):
        check_shared(folder, cid, share, [other for other in ids if other != cid])
        lines = runners[k].lines if k else first.lines + runners[0].lines
        for name in JUNK:  # once per runner process: the restarted one warned again, once
            assert warnings_about(lines, name) == (2 if k == 0 else 1), "".join(lines)[-3000:]
        assert "Traceback" not in "".join(lines)

    shown = Runner(folders[1], "hypotheses", env={"COLUMNS": "400"})  # at 80 columns the id is shortened (c-…54ff…)
    assert shown.wait() == 0 and f"imported from {ids[0]} #" in shown.output, shown.output


def check_shared(folder: Path, cid: str, share: Path, others: list[str]) -> None:
    """Each own accept is in the folder under its name; every import came from another campaign, once."""
    with DuckDBLedger(folder / ".ledgerlab" / "ledger.duckdb") as store:
        rows = store.read(cid)
    payloads = [(row.seq, json.loads(row.payload)) for row in rows]
    proposed = {p["hypothesis_id"]: p for _, p in payloads if p["type"] == "HypothesisProposed"}
    own = {seq for seq, p in payloads if p["type"] == "VerdictReached" and p["decision"] == "accept"
           and proposed[p["hypothesis_id"]]["proposer"] != "imported"}
    assert own and {bundle_name(cid, seq) for seq in own} == {p.name for p in share.glob(f"{cid}-*.json")}
    # A retry (`retry_of`) queues again an import whose test went stale: the same bundle, not a second import.
    stale = {p["hypothesis_id"] for _, p in payloads if p["type"] == "VerdictReached" and p["test"] == "stale"}
    retries = [p for _, p in payloads if p["type"] == "DiscoveryImported" and p.get("retry_of")]
    assert all(p["retry_of"] in stale for p in retries)
    imports = [p for _, p in payloads if p["type"] == "DiscoveryImported" and not p.get("retry_of")]
    assert {p["source_campaign_id"] for p in imports} == set(others)  # never its own
    hashes = [p["provenance"]["content_hash"] for p in imports]
    assert len(hashes) == len(set(hashes))  # a bundle is imported once, restart or not
    keys = [(p["source_campaign_id"], p["source_hypothesis_id"]) for p in imports]
    assert len(keys) == len(set(keys))
    assert all(Path(p["provenance"]["bundle"]).parent == share.resolve() for p in imports)
    retested = [p for _, p in payloads if p["type"] == "HypothesisProposed" and p["agent"].startswith("imported:")]
    assert {p["agent"] for p in retested} == {f"imported:{o}" for o in others}

