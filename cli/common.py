"""Helpers shared by the CLI modules: the project option, one-line errors instead of tracebacks, clipping, and
tables that fit the screen.

Width rules: a line of text (a progress line, a hint with a command to copy) is never hard-wrapped: the
terminal folds it if it must, and a copy keeps it whole. A table fits the terminal (or $COLUMNS): its columns
give way in order (text wraps at spaces, long ids are shortened with an ellipsis, the least useful columns are
dropped), but a number, a word or an id is never split. Off a terminal with no $COLUMNS (a log file, a pipe),
tables take their natural width.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from ledgerlab.errors import LedgerlabError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

WIDE = 10_000  # off a terminal nothing is wrapped: lines and tables take the width they need

DirOption = Annotated[
    str | None,
    typer.Option("--dir", envvar="LEDGERLAB_DIR", metavar="PATH",
                 help="Project folder (holds ledgerlab.toml and .ledgerlab/)."),
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
    """Text on one line, cut to `width` characters, at a space where one is near the end, with an ellipsis."""
    flat = " ".join(str(text or "").split())
    if len(flat) <= width:
        return flat
    head = flat[: width - 1]
    cut = head.rfind(" ")
    return (head[:cut] if cut >= width * 0.6 else head).rstrip(" ,;:") + "…"


def short_float(value: float, digits: int = 12) -> float:
    """A float without binary noise for display (0.07368839999999999 → 0.0736884); inf and nan unchanged."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def round_floats(value: Any) -> Any:
    """`value` with every float inside (dicts, lists, tuples) passed through `short_float`, for JSON output."""
    if isinstance(value, float):
        return short_float(value)
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------- console


def make_console(**options: Any) -> Console:
    """A rich Console whose printed lines are never hard-wrapped; off a terminal, tables at natural width."""
    from rich.console import Console

    options.setdefault("soft_wrap", True)
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        options.setdefault("width", WIDE)
    return Console(**options)


def print_fitted(renderable: Any, console: Console | None = None) -> None:
    """Print a table or panel: on a terminal (or at $COLUMNS) as rich fits it; elsewhere at its natural width."""
    from rich.measure import Measurement

    console = console or make_console()
    if console.is_terminal or console.width < WIDE:
        console.print(renderable, soft_wrap=False)
        return
    width = Measurement.get(console, console.options, renderable).maximum
    console.print(renderable, width=max(20, min(width, WIDE)), soft_wrap=False)


# -------------------------------------------------------------------------------------- fitted tables

Kind = Literal["text", "id", "num"]


@dataclass(frozen=True)
class Col:
    """A table column and how it gives way when the table is too wide.

    kind: text wraps at spaces (a word too long for it ends in …); id is shortened with … down to `shortest`;
    num is never cut (only its header, down to `shortest`). keep: when even the narrowest columns do not fit, the lowest keep is dropped first (ties:
    the rightmost).
    """

    name: str
    kind: Kind = "text"
    keep: int = 1
    shortest: int | None = None


@dataclass
class Fitted:
    table: Table
    dropped: list[str]

    def note(self) -> str:
        """A line saying which columns did not fit, or ''."""
        if not self.dropped:
            return ""
        return f"not shown at this width: {', '.join(self.dropped)} (widen the terminal or set COLUMNS)"


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, **table_options: Any) -> Fitted:
    """A rich Table of `rows` whose columns fit in `width` characters, dropping and shortening as Col says."""
    from rich.cells import cell_len

    natural = [max([cell_len(c.name), *(_longest_line(row[i]) for row in rows)], default=1)
               for i, c in enumerate(cols)]
    cells = [max([0, *(_longest_line(row[i]) for row in rows)]) for i in range(len(cols))]
    least = [_narrowest(c, natural[i], cells[i], cell_len(c.name)) for i, c in enumerate(cols)]
    kept = list(range(len(cols)))
    while len(kept) > 1 and sum(least[i] for i in kept) + _overhead(len(kept), table_options) > width:
        drop = min(reversed(kept), key=lambda i: cols[i].keep)
        kept.remove(drop)
    spare = width - _overhead(len(kept), table_options) - sum(least[i] for i in kept)
    widths = _spread({i: least[i] for i in kept}, {i: natural[i] for i in kept},
                     [i for i in kept if cols[i].kind != "text"], [i for i in kept if cols[i].kind == "text"], spare)
    from rich.table import Table

    table = Table(**table_options)
    for i in kept:
        table.add_column(cols[i].name, width=widths[i], no_wrap=cols[i].kind != "text", overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return Fitted(table, [cols[i].name for i in range(len(cols)) if i not in kept])


def _longest_line(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in str(text).splitlines()), default=0)


def _narrowest(col: Col, natural: int, cells: int, header: int) -> int:
    """The fewest characters a column may take (its header may be shortened to fit its values)."""
    if col.kind == "num":
        return max(cells, min(header, col.shortest or 8), 1)
    return min(natural, col.shortest or (10 if col.kind == "id" else 16))


def _spread(widths: dict[int, int], natural: dict[int, int], firsts: list[int], texts: list[int],
            spare: int) -> dict[int, int]:
    """Give spare characters to ids and numbers up to their natural width, then to text in proportion."""
    for i in firsts:
        more = max(0, min(spare, natural[i] - widths[i]))
        widths[i] += more
        spare -= more
    wants = {i: natural[i] - widths[i] for i in texts}
    total = sum(wants.values())
    if total and spare > 0:
        for i in texts:
            widths[i] += min(wants[i], spare * wants[i] // total)
    return widths


def _overhead(columns: int, table_options: dict[str, Any]) -> int:
    """Characters a table of `columns` columns spends on borders and padding."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    probe = Table(**table_options)
    for _ in range(columns):
        probe.add_column(width=1)
    console = Console(width=WIDE)
    return Measurement.get(console, console.options, probe).maximum - columns
