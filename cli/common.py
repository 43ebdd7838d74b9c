"""Helpers shared by the CLI modules: the project option, one-line errors instead of tracebacks, clipping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from ledgerlab.core.errors import LedgerlabError

DirOption = Annotated[
    str | None,
    typer.Option("--dir", envvar="LEDGERLAB_DIR", help="Project folder (holds ledgerlab.toml and .ledgerlab/)."),
]


@contextmanager
def user_errors(exit_code: int = 2) -> Iterator[None]:
    """Turn a LedgerlabError into `error: ...` on stderr and an exit code, never a traceback."""
    try:
        yield
    except LedgerlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exit_code) from None


def clip(text: Any, width: int = 60) -> str:
    """Text on one line, cut to `width` characters."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
