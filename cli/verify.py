"""`ledgerlab verify`: the ledger's chain, signed checkpoints and a kept head. `ledgerlab sign`: a checkpoint now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledgerlab.cli.common import DirOption, user_errors
from ledgerlab.core.project import Project

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

KeyFileOption = Annotated[list[Path] | None, typer.Option(
    "--key-file", help="Also trust the public key of this key file (a signing_key, a PEM public key or hex).")]
TrustOption = Annotated[list[str] | None, typer.Option(
    "--trust", help="Also trust this Ed25519 public key (64 hex digits), e.g. another machine's.")]
HeadOption = Annotated[str | None, typer.Option(
    "--head", help="A head hash you kept elsewhere: fail unless the chain still holds it.")]


@app.command()
def verify(dir: DirOption = None, key_file: KeyFileOption = None, trust: TrustOption = None,
           head: HeadOption = None) -> None:
    """Check the hash chain, the signed checkpoints and (--head) a head you kept; exit 1 if anything fails."""
    from ledgerlab.storage.verify import verify_report

    with user_errors():
        trusted, keys_line = _trusted(key_file or [], trust or [])
        report = verify_report(Project.at(dir).ledger_path, trusted.values(), head)
    typer.echo(keys_line)
    for passed, text in report.lines():
        typer.echo(text, err=not passed)
    if not report.ok:
        raise typer.Exit(1)


def _trusted(key_files: list[Path], keys: list[str]) -> tuple[dict[str, str], str]:
    """The trusted public keys by key id (the local key's first, if it exists), and a line that names them."""
    from ledgerlab.storage.signing import default_key_path, key_id, normalize_public_key, read_public_key

    local = default_key_path()
    given = {key_id(k): k for k in [*(read_public_key(f) for f in key_files), *map(normalize_public_key, keys)]}
    trusted, line = dict(given), f"keys: no local key at {local}"
    if local.exists():
        public = read_public_key(local)
        given.pop(key_id(public), None)
        trusted = {key_id(public): public, **given}
        line = f"keys: trusting the local key {key_id(public)} ({local}; public key {public})"
    return trusted, line + (f" and {', '.join(given)} (given)" if given else "")


@app.command()
def sign(dir: DirOption = None) -> None:
    """Append a signed checkpoint of the ledger's head now (refused while a campaign runs in this folder)."""
    from ledgerlab.cli.session import only_runner
    from ledgerlab.errors import LedgerError
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.signing import load_or_create_key

    with user_errors():
        project = Project.at(dir)
        if not project.ledger_path.exists():
            raise LedgerError(f"no ledger at {project.ledger_path}: nothing to sign")
        key = load_or_create_key()
        with only_runner(project) as lock, DuckDBLedger(project.ledger_path, guard=lock.check) as store:
            seq, digest = store.head()
            if seq == 0:
                raise LedgerError("the ledger is empty: nothing to sign")
            campaign_id = store.read(after_seq=seq - 1, limit=1)[0].campaign_id  # the head's stream takes it
            row = store.append(campaign_id, [key.checkpoint(seq, digest)], store.version(campaign_id))[0]
    typer.echo(f"signed seq {seq} ({digest}) with key {key.key_id} ({key.path}; public key {key.public_key}); "
               f"the checkpoint is seq {row.seq}")
