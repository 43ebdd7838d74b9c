"""Commands that read the ledger: `sql`, `log`, `schema` (`verify`: cli/verify.py). duckdb, rich load inside."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any

import typer

from ledgerlab.cli.common import (
    Col,
    DirOption,
    Kind,
    clip,
    fit_table,
    make_console,
    print_fitted,
    round_floats,
    user_errors,
)
from ledgerlab.core.project import Project
from ledgerlab.errors import QueryError

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


# ------------------------------------------------------------------------------------------ sql


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement, e.g. \"SELECT * FROM leaderboard\".")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    dir: DirOption = None,
) -> None:
    """Run a read-only SQL query over the ledger's views (see `ledgerlab schema`)."""
    from ledgerlab.storage.query import run_query

    with user_errors():
        try:
            result = run_query(Project.at(dir).ledger_path, query)
        except QueryError as exc:
            raise _with_schema_hint(exc) from None
    render(result.columns, result.rows, format)


def _with_schema_hint(exc: QueryError) -> QueryError:
    """An unknown table or column: point to `ledgerlab schema`, which lists the views and their columns."""
    text = str(exc)
    if "Catalog Error" in text or "Binder Error" in text or "does not exist" in text:
        return type(exc)(f"{text.rstrip('!. ')}; `ledgerlab schema` lists the views and their columns")
    return exc


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: Format) -> None:
    """Print a result in the chosen format."""
    if fmt is Format.table:
        _rich_table(columns, rows)
    elif fmt is Format.csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
    elif fmt is Format.json:
        typer.echo(json.dumps([round_floats(dict(zip(columns, row))) for row in rows], default=str, indent=1))
    else:
        typer.echo("| " + " | ".join(columns) + " |")
        typer.echo("|" + "|".join("---" for _ in columns) + "|")
        for row in rows:
            typer.echo("| " + " | ".join(_plain(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")


def _rich_table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """The rows as a table that fits the screen: numbers and ids never split, the rightmost columns dropped
    first when even shortened ones do not fit."""
    from rich.console import Group
    from rich.text import Text

    console = make_console()
    cells = [[_plain(v) if v is not None else "NULL" for v in row] for row in rows]
    cols = [Col(name, _kind([row[i] for row in rows]), keep=len(columns) - i) for i, name in enumerate(columns)]
    fitted = fit_table(cols, cells, console.width)
    note = [Text(fitted.note() + "; or use --format csv", style="dim")] if fitted.dropped else []
    print_fitted(Group(fitted.table, *note), console)
    typer.echo(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


def _kind(values: list[Any]) -> Kind:
    """num for a column of numbers, text where some value has spaces (it wraps there), else id."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "num"
    return "text" if any(" " in _plain(v) or "\n" in _plain(v) for v in present) else "id"


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# ------------------------------------------------------------------------------------------ log


@app.command()
def log(
    campaign: Annotated[str | None, typer.Option("--campaign", "-c", help="Only this campaign (id or prefix).")] = None,
    type: Annotated[str | None, typer.Option("--type", "-t", help="Only this event type, e.g. RunFinished.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show the latest N events.")] = 50,
    dir: DirOption = None,
) -> None:
    """Show the latest events of the ledger, one line each."""
    from ledgerlab.storage.events import EVENT_TYPES
    from ledgerlab.storage.ledger import read_only_connection

    type = {name.lower(): name for name in EVENT_TYPES}.get(type.lower(), type) if type else None
    if type is not None and type not in EVENT_TYPES:
        typer.echo(f"error: no event type {type!r}; choose one of {', '.join(EVENT_TYPES)}", err=True)
        raise typer.Exit(2)
    where, params = ["TRUE"], []
    if campaign:
        where.append("starts_with(campaign_id, ?)")
        params.append(campaign)
    if type:
        where.append("type = ?")
        params.append(type)
    sql_text = (f"SELECT seq, recorded_at, campaign_id, type, payload FROM events WHERE {' AND '.join(where)} "
                f"ORDER BY seq DESC LIMIT {max(int(limit), 0)}")
    with user_errors():
        with read_only_connection(Project.at(dir).ledger_path) as con:
            rows = con.execute(sql_text, params).fetchall()
    width = max((len(r[2]) for r in rows), default=0)  # campaign ids are short: shown whole (the date alone is not one)
    for seq, at, campaign_id, event_type, payload in reversed(rows):
        stamp = at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{seq:>7}  {stamp}  {campaign_id:<{width}}  {event_type:<18} {summarize(event_type, payload)}")


def summarize(event_type: str, payload: str) -> str:
    """A short human summary of one payload."""
    p: dict[str, Any] = json.loads(payload)
    short = lambda key: str(p.get(key) or "")[:12]  # noqa: E731 - ids are hashes; 12 chars identify them
    lines = {
        "CampaignStarted": lambda: f"{p.get('domain')} {p.get('metric', {}).get('name')} "
                                   f"({p.get('metric', {}).get('direction')}) baseline {short('baseline_candidate_id')}",
        "CampaignPaused": lambda: f"paused: {p.get('reason')}",
        "CampaignResumed": lambda: f"resumed, re-running {len(p.get('reruns', []))} runs",
        "CampaignFinished": lambda: f"finished: {p.get('reason')} {p.get('detail', '')}".rstrip(),
        "HypothesisProposed": lambda: f"{short('hypothesis_id')} by {p.get('proposer')}: {clip(p.get('rationale'))}",
        "PatchRejected": lambda: f"{short('hypothesis_id')}: {clip(p.get('reason'))}",
        "CandidateCreated": lambda: f"{short('candidate_id')} from {short('hypothesis_id')}",
        "RunStarted": lambda: f"{short('run_id')} {p.get('role')} {short('candidate_id')} seed {p.get('seed')}"
                              + (f" attempt {p.get('attempt')}" if (p.get("attempt") or 1) > 1 else ""),
        "RunFinished": lambda: f"{short('run_id')} value {_num(p.get('value'))} in {_num(p.get('duration_s'))} s",
        "RunFailed": lambda: f"{short('run_id')} {p.get('status')}: {clip(p.get('error'))}",
        "VerdictReached": lambda: f"{short('hypothesis_id')} {p.get('decision')} ({p.get('test')}, "
                                  f"p={_num(p.get('p_value'))}, effect {_num(p.get('effect'))}) {p.get('reason', '')}".rstrip(),
        "IncumbentChanged": lambda: f"{short('candidate_id')} from {short('hypothesis_id')} "
                                    f"replaces {short('previous_candidate_id')}",
        "DiscoveryImported": lambda: f"{short('hypothesis_id')} from {p.get('source_campaign_id')} "
                                     f"#{p.get('source_number')}: {clip(p.get('rationale'))}"
                                     + (f" (again: {str(p['retry_of'])[:12]} went stale)" if p.get("retry_of") else ""),
        "LLMCallCompleted": lambda: f"{p.get('model')} {p.get('prompt_tokens')}+{p.get('completion_tokens')} tokens "
                                    f"{'ok' if p.get('ok') else 'error: ' + clip(p.get('error'))}",
        "ProposerFailed": lambda: f"agent {p.get('agent')} ({p.get('proposer')}) failed, {p.get('consecutive')} in a "
                                  f"row: {clip(p.get('error'))}",
        "CheckpointSigned": lambda: f"signed head seq {p.get('head_seq')} {short('head_hash')} by key {p.get('key_id')}",
    }
    make = lines.get(event_type)
    if make is None:
        return clip(", ".join(f"{k}={v}" for k, v in p.items() if k != "type"))
    return make()


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


# --------------------------------------------------------------------------------------- schema


@app.command()
def schema() -> None:
    """List the SQL views with their columns, and the event types with their fields."""
    from ledgerlab.storage.events import EVENT_TYPES
    from ledgerlab.storage.views import VIEW_DOCS

    typer.echo("Views (query them with `ledgerlab sql`):")
    for name, (meaning, columns) in VIEW_DOCS.items():
        typer.echo(f"\n{name}: {meaning}")
        for column, text in columns.items():
            typer.echo(f"  {column:<26} {text}")
    typer.echo("\nTable events: seq, event_id, campaign_id, version, type, schema_version, payload (JSON), "
               "recorded_at (UTC), prev_hash, hash")
    typer.echo("\nEvent types (payload fields):")
    for name, cls in EVENT_TYPES.items():
        fields = [f"{field}: {_type_name(info.annotation)}" for field, info in cls.model_fields.items() if field != "type"]
        typer.echo(f"  {name} (v{cls.SCHEMA_VERSION}): {', '.join(fields)}")


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if getattr(annotation, "__args__", None) is None else None
    return text or str(annotation).replace("typing.", "")
