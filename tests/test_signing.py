"""Signed checkpoints end to end: real campaigns, real DuckDB files edited the way an attacker would, `verify`."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.cli.session import only_runner
from ledgerlab.core import campaign as campaign_module
from ledgerlab.core.project import Project
from ledgerlab.errors import SigningKeyError
from ledgerlab.storage import events as ev
from ledgerlab.storage.derived import DERIVED
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.storage.schema import COLUMNS
from ledgerlab.storage.signing import (
    KEY_NAME,
    CheckpointSigner,
    SigningKey,
    default_key_path,
    load_or_create_key,
    normalize_public_key,
    read_public_key,
    signature_valid,
)
from ledgerlab.storage.verify import check_checkpoint, verify_ledger, verify_report
from tests.test_campaign import campaign

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def ledger_of(folder: Path) -> Path:
    return Project.at(folder).ledger_path


def rows_of(folder: Path) -> list[ev.StoredEvent]:
    with DuckDBLedger(ledger_of(folder)) as store:
        return store.read()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 3-hypothesis marketing campaign run by the CLI, and the key file that signed it."""
    root = tmp_path_factory.mktemp("signed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGERLAB_KEY_DIR", str(root / "keys"))
        result = invoke("run", "marketing", "--dir", str(root / "project"), "--max-hypotheses", "3", "--seed", "1",
                        "--quiet")
    assert result.exit_code == 0, result.output
    return root / "project", root / "keys" / KEY_NAME


@pytest.fixture
def project(finished: tuple[Path, Path], tmp_path: Path, key_dir: Path) -> Path:
    """A copy of that campaign's folder; its key is this test's local key (LEDGERLAB_KEY_DIR)."""
    source, key = finished
    shutil.copytree(source, tmp_path / "project")
    shutil.copy2(key, key_dir / KEY_NAME)  # keeps mode 0600
    return tmp_path / "project"


# -------------------------------------------------------------------------------------- the attack


def rewrite(ledger: Path, seq: int, edit: Callable[[dict[str, Any]], None],
            resign: SigningKey | None = None) -> None:
    """Change the payload at `seq`, then recompute every later prev_hash and hash with the package's own row_hash.

    With `resign`, every CheckpointSigned from there on is signed again, by that key, over the new hashes.
    """
    con = duckdb.connect(str(ledger))
    try:
        select = f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq >= ? ORDER BY seq"
        rows = con.execute(select, [seq]).fetchall()
        hashes = dict(con.execute("SELECT seq, hash FROM events WHERE seq < ?", [seq]).fetchall())
        previous = hashes.get(seq - 1, ev.GENESIS_HASH)
        for row in rows:
            r = ev.StoredEvent(*row)
            payload = r.payload
            if r.seq == seq:
                data = json.loads(payload)
                edit(data)
                payload = json.dumps(data, separators=(",", ":"))
            if resign is not None and r.type == "CheckpointSigned":
                head = json.loads(payload)["head_seq"]
                payload = ev.encode(resign.checkpoint(head, hashes[head]))[2]
            digest = ev.row_hash(previous, r.seq, r.event_id, r.campaign_id, r.version, r.type, r.schema_version,
                                 payload, r.recorded_at)
            con.execute("UPDATE events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                        [payload, previous, digest, r.seq])
            hashes[r.seq] = previous = digest
        rederive(con)  # and the typed tables the views read, or `verify` finds them out of step
    finally:
        con.close()


def rederive(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the derived tables from the (edited) events, as a thorough attacker would."""
    for derived in DERIVED:
        con.execute(f"DELETE FROM {derived.table}")
        con.execute(f"INSERT INTO {derived.table} {derived.select()}")


def first_of(folder: Path, event_type: str) -> ev.StoredEvent:
    return next(r for r in rows_of(folder) if r.type == event_type)


def halve_value(data: dict[str, Any]) -> None:
    data["value"] = data["value"] / 2


# ----------------------------------------------------------------------------------------- tests


def test_a_finished_campaign_is_signed_by_a_private_key_outside_the_project(project: Path, key_dir: Path,
                                                                             finished: tuple[Path, Path]) -> None:
    key = finished[1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and not key.is_relative_to(finished[0])
    assert default_key_path() == key_dir / KEY_NAME  # every test's key is a temporary one (tests/conftest.py)
    rows = rows_of(project)
    assert [r.type for r in rows[-2:]] == ["CampaignFinished", "CheckpointSigned"]
    checkpoint = rows[-1].event()
    assert isinstance(checkpoint, ev.CheckpointSigned) and signature_valid(checkpoint)
    assert (checkpoint.head_seq, checkpoint.head_hash) == (rows[-2].seq, rows[-2].hash)
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output and f"OK: events 1-{rows[-2].seq} are as" in result.output
    assert f"trusting the local key {checkpoint.key_id}" in result.output
    assert f"public key {checkpoint.public_key}" in result.output  # what another machine's --trust takes


def test_rewriting_a_payload_and_every_later_hash_is_caught_by_the_checkpoint(project: Path) -> None:
    assert invoke("verify", "--dir", str(project)).exit_code == 0
    before = first_of(project, "RunFinished")
    rewrite(ledger_of(project), before.seq, halve_value)
    after = first_of(project, "RunFinished")
    assert after.event().value == before.event().value / 2  # type: ignore[attr-defined]
    assert after.hash != before.hash
    assert verify_ledger(ledger_of(project)).ok  # the attack works on the chain alone
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 1, result.output
    assert "the signed head hash differs from the chain's" in result.output and "was changed" in result.output
    assert "chain intact" in result.output and "FAILED" in result.output


def test_checkpoints_signed_again_with_another_key_are_an_unknown_key(project: Path, tmp_path: Path) -> None:
    attacker = load_or_create_key(tmp_path / "elsewhere" / KEY_NAME)
    rewrite(ledger_of(project), first_of(project, "RunFinished").seq, halve_value, resign=attacker)
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 1, result.output
    assert f"signed by an unknown key {attacker.key_id}" in result.output
    assert "signature does not verify" not in result.output and "differs" not in result.output
    # Trusting a key is the user's call: --trust or --key-file (here, wrongly, the attacker's) accepts it.
    assert invoke("verify", "--dir", str(project), "--trust", attacker.public_key).exit_code == 0
    assert invoke("verify", "--dir", str(project), "--key-file", str(attacker.path)).exit_code == 0


def test_a_checkpoint_edited_without_the_key_fails_its_signature(project: Path) -> None:
    checkpoint = first_of(project, "CheckpointSigned")

    def forge(data: dict[str, Any]) -> None:
        data["head_hash"] = rows_of(project)[data["head_seq"] - 1].hash

    rewrite(ledger_of(project), first_of(project, "RunFinished").seq, halve_value)
    rewrite(ledger_of(project), checkpoint.seq, forge)
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 1 and "the signature does not verify" in result.output, result.output


def test_a_head_kept_elsewhere_finds_truncation(project: Path) -> None:
    rows = rows_of(project)
    kept, earlier = rows[-1].hash, rows[5]
    result = invoke("verify", "--dir", str(project), "--head", kept)
    assert result.exit_code == 0 and f"is seq {rows[-1].seq}; 0 events follow it" in result.output, result.output
    result = invoke("verify", "--dir", str(project), "--head", earlier.hash.upper())
    follow = f"is seq {earlier.seq}; {len(rows) - earlier.seq} events follow it"
    assert result.exit_code == 0 and follow in result.output, result.output
    # Cut the ledger back past its checkpoint: the chain and the (now absent) signatures cannot tell ...
    con = duckdb.connect(str(ledger_of(project)))
    con.execute("DELETE FROM events WHERE seq > ?", [len(rows) - 4])
    rederive(con)
    con.close()
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 0 and "OK, but unsigned" in result.output, result.output
    # ... the head kept elsewhere can.
    result = invoke("verify", "--dir", str(project), "--head", kept)
    assert result.exit_code == 1 and f"head {kept} is not in the ledger" in result.output, result.output
    assert invoke("verify", "--dir", str(project), "--head", "00ff").exit_code == 1


def test_sign_appends_a_checkpoint_of_the_head_but_not_while_a_run_holds_the_folder(project: Path) -> None:
    head = rows_of(project)[-1]
    result = invoke("sign", "--dir", str(project))
    assert result.exit_code == 0 and f"signed seq {head.seq}" in result.output, result.output
    last = rows_of(project)[-1]
    assert last.type == "CheckpointSigned" and last.campaign_id == head.campaign_id
    assert f"public key {last.event().public_key}" in result.output  # type: ignore[attr-defined]
    assert (last.event().head_seq, last.event().head_hash) == (head.seq, head.hash)  # type: ignore[attr-defined]
    assert invoke("verify", "--dir", str(project)).exit_code == 0
    with only_runner(Project.at(project)):
        result = invoke("sign", "--dir", str(project))
    assert result.exit_code == 2 and "another `ledgerlab run`" in result.output, result.output
    assert rows_of(project)[-1] == last


def test_a_key_others_can_read_is_refused_with_a_fix(project: Path, key_dir: Path) -> None:
    (key_dir / KEY_NAME).chmod(0o640)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_key()
    result = invoke("verify", "--dir", str(project))
    assert result.exit_code == 2 and "chmod 600" in result.output, result.output


def test_no_usable_key_warns_once_and_the_campaign_runs_unsigned(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("LEDGERLAB_KEY_DIR", str(blocker / "keys"))  # mkdir fails: a file is in the way
    result = invoke("run", "marketing", "--dir", str(tmp_path / "p"), "--max-hypotheses", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning") == 1 and "not signed in this session" in result.output
    assert "CheckpointSigned" not in [r.type for r in rows_of(tmp_path / "p")]
    result = invoke("verify", "--dir", str(tmp_path / "p"))
    assert result.exit_code == 0 and "OK, but unsigned" in result.output and "no local key" in result.output


def test_checkpoints_every_n_events_each_sign_the_event_before_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaign_module, "CHECKPOINT_EVERY", 7)
    key = load_or_create_key()
    with DuckDBLedger(tmp_path / "ledger.duckdb") as store:
        campaign(store, tmp_path, [{"X": 5.0}, {"MODE": "fancy"}, {"Y": 5}]).run()
        rows = store.read()
    marks = [r for r in rows if r.type == "CheckpointSigned"]
    assert len(marks) >= len(rows) // 8 and rows[-1].type == "CheckpointSigned"
    for mark in marks:
        assert mark.event().head_seq == mark.seq - 1  # type: ignore[attr-defined]
    report = verify_report(tmp_path / "ledger.duckdb", [key.public_key])
    assert report.ok and report.signed_up_to == len(rows) - 1 and len(report.checkpoints) == len(marks)
    # Unusable key: one warning however many checkpoints fall due, and nothing written for them.
    warnings: list[str] = []
    signer = CheckpointSigner(tmp_path / "missing-dir-is-a-file" / KEY_NAME, warn=warnings.append)
    (tmp_path / "missing-dir-is-a-file").write_text("")
    with DuckDBLedger(tmp_path / "other.duckdb") as store:
        camp = campaign(store, tmp_path, [{"X": 5.0}, {"MODE": "fancy"}])
        camp.signer = signer
        camp.run()
        assert "CheckpointSigned" not in [r.type for r in store.read()] and len(store.read()) > 14
    assert len(warnings) == 1 and "cannot create or read the signing key" in warnings[0]


def test_signatures_bind_the_head_and_keys_read_back_in_every_form(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k" / KEY_NAME)
    assert load_or_create_key(tmp_path / "k" / KEY_NAME).public_key == key.public_key  # made once, then read
    mark = key.checkpoint(12, "ab" * 32)
    assert signature_valid(mark)
    assert not signature_valid(mark.model_copy(update={"head_seq": 11}))
    assert not signature_valid(mark.model_copy(update={"head_hash": "cd" * 32}))
    assert not signature_valid(mark.model_copy(update={"key_id": "0" * 16}))
    assert not signature_valid(mark.model_copy(update={"signature": "zz"}))
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    (tmp_path / "pub.hex").write_text(key.public_key.upper() + "\n")
    for source in (key.path, tmp_path / "pub.pem", tmp_path / "pub.hex"):
        assert read_public_key(source) == key.public_key
    with pytest.raises(SigningKeyError, match="64 hex digits"):
        normalize_public_key("abc")
    for junk in ("{", '{"type":"CampaignPaused","reason":"x"}'):  # not a checkpoint, whatever its row's type says
        assert check_checkpoint(3, 1, junk, "ab" * 32, [key.public_key]).problems == (
            "the payload is not a readable checkpoint",)
