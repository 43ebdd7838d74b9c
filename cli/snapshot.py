"""`ledgerlab snapshot OUT`: a consistent copy of the ledger, for DuckDB clients of any version from 1.0.0.

    ledgerlab snapshot ledger-copy.duckdb        # then: duckdb ledger-copy.duckdb "SELECT * FROM leaderboard"
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledgerlab.cli.common import DirOption, user_errors
from ledgerlab.core.project import Project

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py


@app.command()
def snapshot(
    out: Annotated[Path, typer.Argument(help="The DuckDB file to write (it must not exist).")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it is a file.")] = False,
    dir: DirOption = None,
) -> None:
    """Write a consistent copy of the ledger (events and views) that any DuckDB >= 1.0 opens; safe while running."""
    from ledgerlab.storage.snapshot import snapshot as take

    with user_errors():
        info = take(Project.at(dir).ledger_path, out, overwrite=force)
    typer.echo(f"wrote {info.events} events (head seq {info.head_seq}) to {info.path}, taken by {info.via}")
