"""Helpers shared by the CLI modules: the project option, one-line errors instead of tracebacks, clipping."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.core.errors import LedgerlabError

if TYPE_CHECKING:
    from rich.console import Console

WIDE = 10_000  # off a terminal nothing is wrapped: lines and tables take the width they need

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


def make_console(**options: Any) -> Console:
    """A rich Console; off a terminal (a log file, a pipe) one that never hard-wraps a line."""
    from rich.console import Console

    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        options.setdefault("width", WIDE)
        options.setdefault("soft_wrap", True)
    return Console(**options)


def print_fitted(renderable: Any, console: Console | None = None) -> None:
    """Print a table or panel: on a terminal as rich fits it; elsewhere at its natural width, unwrapped."""
    from rich.measure import Measurement

    console = console or make_console()
    if console.is_terminal or console.width < WIDE:
        console.print(renderable)
        return
    width = Measurement.get(console, console.options, renderable).maximum
    console.print(renderable, width=max(20, min(width, WIDE)))
