"""`ledgerlab export --format discoveries` and `ledgerlab import`: accepted changes that travel between campaigns.

    ledgerlab export --format discoveries --out shop.json --dir shop   # a bundle of the accepted changes
    ledgerlab import shop.json --dir other                            # queue them as hypotheses of `other`
    ledgerlab import ../shop --dir other                              # or straight from a project or ledger

An import records one DiscoveryImported per new change and nothing else: the next `ledgerlab run` or `resume`
proposes them before its agents' own ideas, and the judge keeps one only on this campaign's runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.cli.common import DirOption, clip, user_errors
from ledgerlab.core.project import Project
from ledgerlab.errors import CampaignError, LedgerlabError

if TYPE_CHECKING:
    from ledgerlab.core.discoveries import Bundle
    from ledgerlab.core.state import CampaignState


app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

# ------------------------------------------------------------------------------------------- export


def source_body(ledger: Path, campaign: str | None) -> dict[str, Any]:
    """The bundle body of a campaign (id or prefix; default the latest) of the ledger file `ledger`."""
    from ledgerlab import __version__
    from ledgerlab.core.discoveries import bundle_body
    from ledgerlab.storage.events import GENESIS_HASH
    from ledgerlab.storage.ledger import read_only_connection, select_events, to_stored
    from ledgerlab.storage.query import pick_campaign

    if not ledger.exists():
        raise LedgerlabError(f"no ledger at {ledger}: nothing to export")
    with read_only_connection(ledger) as con:
        campaign_id = pick_campaign(con, campaign)
        sql, params = select_events(campaign_id, 0, None, None)
        rows = [to_stored(row) for row in con.execute(sql, params).fetchall()]
        head = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        newest = con.execute("SELECT max(seq) FROM events WHERE type = 'CheckpointSigned'").fetchone()
        checkpoint = None
        if newest and newest[0] is not None:  # the chain is one for the whole ledger: its last signature
            sql, params = select_events(None, int(newest[0]) - 1, ["CheckpointSigned"], 1)
            checkpoint = to_stored(con.execute(sql, params).fetchall()[0])
    return bundle_body(rows, (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH), checkpoint, __version__)


def export_discoveries(directory: str | None, campaign: str | None, out: Path | None) -> None:
    """Write the campaign's discoveries bundle to `out` (default: stdout)."""
    from ledgerlab.core.discoveries import bundle_text
    from ledgerlab.storage.signing import usable_key

    body = source_body(Project.at(directory).ledger_path, campaign)
    key = usable_key(lambda line: typer.echo(f"warning: {line}", err=True), "the bundle is not signed")
    text = bundle_text(body, key)
    count = len(body["discoveries"])
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LedgerlabError(f"cannot write {out}: {exc.strerror or exc}") from None
    signed = f", signed by key {key.key_id} (public key {key.public_key})" if key is not None else ", not signed"
    typer.echo(f"wrote {count} accepted change{'' if count == 1 else 's'} of campaign "
               f"{body['source']['campaign_id']} ({body['domain']['name']}) to {out}{signed}", err=True)


# ------------------------------------------------------------------------------------------- import


def load_source(path: Path, campaign: str | None, trusted: frozenset[str] = frozenset()) -> tuple[Bundle, str]:
    """The bundle at `path`, or one made now from a project folder or ledger file; and a name for messages.
    With keys to trust (`--trust`), only a bundle file that one of them signed."""
    from ledgerlab.core.discoveries import check_trusted

    bundle, name, is_file = _load(path.expanduser(), campaign)
    if trusted and not is_file:
        raise LedgerlabError(f"--trust checks a bundle file's signature, and {name} is a project or a ledger: "
                             "`ledgerlab verify --trust KEY` checks its checkpoints; then import it without --trust")
    check_trusted(bundle, trusted, name)
    return bundle, name


def _load(path: Path, campaign: str | None) -> tuple[Bundle, str, bool]:
    """The bundle, a name for messages, and whether it was a bundle file (not made now from a ledger)."""
    from ledgerlab.core.discoveries import bundle_file_text, bundle_text, read_bundle

    if path.is_dir():
        ledger = Project.at(path).ledger_path
        if not ledger.exists():
            raise LedgerlabError(f"{path} is neither a bundle nor a project with a ledger (no {ledger})")
        return read_bundle(bundle_text(source_body(ledger, campaign)), str(path)), str(path), False
    if path.exists() and not path.is_file():  # a FIFO or a device: opening it could block or never end
        raise LedgerlabError(f"{path} is not a regular file: give a bundle, a ledger file or a project folder")
    try:
        with path.open("rb") as f:
            head = f.read(64)  # a ledger may be gigabytes: only its first bytes tell it from a bundle
        if head.lstrip()[:1] != b"{":  # not JSON: a ledger file to export from
            return read_bundle(bundle_text(source_body(path, campaign)), str(path)), str(path), False
        if campaign is not None:
            raise LedgerlabError("--from-campaign picks a campaign of a ledger; a bundle holds one campaign already")
        return read_bundle(bundle_file_text(path), str(path)), str(path), True
    except OSError as exc:
        raise LedgerlabError(f"cannot read {path}: {exc.strerror or exc}") from None


def target_domain(project: Project, state: CampaignState, store: Any) -> str:
    """This project's domain: its open campaign's, else ledgerlab.toml's, else its latest campaign's."""
    from ledgerlab.core.config import load_config
    from ledgerlab.core.state import fold

    if state.started is not None:
        return state.started.domain
    if queued := sorted({item.domain for item in state.imports.values()}):
        return queued[0]
    if configured := load_config(project.config_path).domain:
        return configured
    for campaign_id in reversed(store.campaign_ids()):
        started = fold(campaign_id, store.read(campaign_id)).started
        if started is not None:
            return started.domain
    raise CampaignError(f"{project.root} has no domain yet: `ledgerlab init DOMAIN --dir {project.root}` first")


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(metavar="BUNDLE_OR_LEDGER", help=(
        "A bundle (`ledgerlab export --format discoveries`), or another project's folder or ledger file."))],
    from_campaign: Annotated[str | None, typer.Option(
        "--from-campaign", help="The source campaign, when importing from a ledger (default: its latest).")] = None,
    trust: Annotated[list[str] | None, typer.Option(
        "--trust", metavar="KEY", help=("Import the bundle only if this Ed25519 public key (64 hex digits, as "
                                        "`ledgerlab verify` prints it) signed it; repeatable."))] = None,
    dir: DirOption = None,
) -> None:
    """Queue another campaign's accepted changes as hypotheses this campaign's judge tests on its own runs."""
    from ledgerlab.cli.session import only_runner
    from ledgerlab.core.campaign import open_campaign_id
    from ledgerlab.core.discoveries import import_events
    from ledgerlab.core.state import fold
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.signing import trusted_keys

    with user_errors():
        bundle, name = load_source(source, from_campaign, trusted_keys(trust or []))  # checked before this folder is touched
        project = Project.at(dir)
        if not project.config_path.exists() and not project.ledger_path.exists():
            raise LedgerlabError(f"{project.root} is not a ledgerlab project: `ledgerlab init "
                                 f"{bundle.body.domain.name} --dir {project.root}` first")
        with only_runner(project) as lock, DuckDBLedger(project.ledger_path, guard=lock.check) as store:
            campaign_id = open_campaign_id(store) or _new_campaign_id()
            state = fold(campaign_id, store.read(campaign_id))
            new, skipped = import_events(bundle, state, target_domain(project, state, store), name)
            if new:
                store.append(campaign_id, new, expected_version=state.version)
    _report(bundle, new, skipped, campaign_id, state.started is not None, project)


def _new_campaign_id() -> str:
    """The id the next `ledgerlab run` starts its campaign under (the format core/campaign.py uses)."""
    import time
    import uuid

    return f"c-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _report(bundle: Bundle, new: list[Any], skipped: list[Any], campaign_id: str, started: bool,
            project: Project) -> None:
    from ledgerlab.cli.campaign import fmt, interval

    source = bundle.body.source.campaign_id
    if not new and not skipped:
        typer.echo(f"campaign {source} accepted no changes: nothing to import")
        return
    for item in new:
        typer.echo(f"queued {item.hypothesis_id} (#{item.source_number} of {source}): {clip(item.rationale, 80)}; "
                   f"{item.effect_basis} there at {fmt(item.effect)} {interval(item.ci_low, item.ci_high)}".rstrip())
    for found in skipped:
        typer.echo(f"already imported: #{found.number} of {source}: {clip(found.rationale, 80)}")
    if bundle.signer is not None:
        from ledgerlab.storage.signing import key_id

        typer.echo(f"bundle signed by key {key_id(bundle.signer)} (public key {bundle.signer}; `--trust` it to "
                   "import only what that key signed)")
    when = "resume" if started else "run"
    typer.echo(f"{len(new)} discover{'y' if len(new) == 1 else 'ies'} queued in campaign {campaign_id}"
               + (f", {len(skipped)} already there" if skipped else "")
               + (f"; `ledgerlab {when} --dir {project.root}` tests them first, against this campaign's incumbent" if new else ""))
