"""The `ledgerlab` command: one typer app, one module per noun, heavy imports deferred to the commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from ledgerlab import __version__
from ledgerlab.cli import (
    campaign,
    discoveries,
    export,
    init,
    query,
    run,
    show,
    snapshot,
    transfer,
    ui,
    verify,
)
from ledgerlab.cli.marketing import marketing_app

if TYPE_CHECKING:  # typer carries its own click, whose Context and HelpFormatter TyperGroup's methods take
    from typer._click.core import Context
    from typer._click.formatting import HelpFormatter

# `ledgerlab --help` lists the commands in the order a new user meets them; any other command comes after.
ORDER = ("init", "run", "resume", "status", "hypotheses", "show", "log", "sql", "schema", "export", "import",
         "transfer", "plot", "ui", "checkout", "verify", "sign", "snapshot", "domains", "marketing")


class Commands(TyperGroup):
    """The top-level group: commands in ORDER, each with its whole first sentence (click cuts it at ~45)."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(ORDER)), names.index(name)))

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(limit=1_000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    name="ledgerlab",
    cls=Commands,
    help="Research campaigns judged by statistics, recorded in an append-only DuckDB ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ledgerlab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    """ledgerlab: propose a change, run it under a budget, let a statistical test keep it or not."""


def main() -> None:
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    from ledgerlab.errors import LedgerlabError

    try:
        app()
    except LedgerlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


# One Typer app per noun module, its commands joined here at the top level (a nameless `add_typer` merges them);
# `marketing` keeps its own group. No module imports torch or litellm at import time.
for _module in (query, run, campaign, show, export, discoveries, init, snapshot, ui, verify, transfer):
    app.add_typer(_module.app)
app.add_typer(marketing_app, name="marketing")
