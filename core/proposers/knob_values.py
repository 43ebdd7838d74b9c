"""A knob's values as the offline proposers see them: read from files and diffs, and what was tried.

`readable_knobs` gives each declared knob's value on the incumbent; `parse_history` turns the ledger's
history into `Seen` changes (the values they moved from and to) and the keys of changes already tried on
the incumbent or in flight, which a proposer must not propose again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import HistoryItem, Knob, ProposalContext
from ledgerlab.errors import PatchError, ProposerError

PENDING = frozenset({"proposed", "testing"})
Key = frozenset[tuple[str, str]]
MISSING = object()  # a knob with no parseable line
_NEW_FILE = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


# -------------------------------------------------------------------------------------------- values


def norm_value(knob: Knob | None, value: Any) -> Any:
    """`value` in the knob's type, so that 49 and 49.0 (TOML writes both) compare equal."""
    if knob is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if knob.kind == "float":
        return float(value)
    return int(value) if knob.kind == "int" and float(value).is_integer() else value


def change_key(changes: Mapping[str, Any]) -> Key:
    """What identifies a change: the knobs it sets and their new values."""
    return frozenset((name, repr(value)) for name, value in changes.items())


def round_sig(x: float) -> float:
    # write_knob prints floats with 6 (or, in exponent form, 4) significant digits; 4 survive the round trip.
    return float(f"{x:.4g}")


def clamp(knob: Knob, x: float) -> float:
    """`x` within the knob's bounds (a missing bound does not clamp)."""
    if knob.low is not None:
        x = max(x, knob.low)
    return min(x, knob.high) if knob.high is not None else x


def show(value: Any) -> str:
    """A value as the rationale prints it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_value(files: Mapping[str, str], knob: Knob) -> Any:
    """The knob's value in `files`, or MISSING when the line is absent or unparseable."""
    try:
        return norm_value(knob, read_knob(dict(files), knob))
    except (PatchError, ValueError, SyntaxError):
        return MISSING


def readable_knobs(context: ProposalContext, proposer: str) -> dict[str, tuple[Knob, Any]]:
    """Each declared knob that the incumbent has a line for, with its current value (declared order)."""
    if not context.knobs:
        raise ProposerError(f"domain {context.domain_name!r} declares no knobs, so the {proposer} proposer "
                            f"has nothing to tune; use --proposer llm")
    found = {k.name: (k, read_value(context.incumbent_files, k)) for k in context.knobs}
    found = {name: kv for name, kv in found.items() if kv[1] is not MISSING}
    if not found:
        raise ProposerError(f"none of the knobs of {context.domain_name!r} has a `NAME = value` line in "
                            f"the incumbent")
    return found


# ------------------------------------------------------------------------------------------- history


@dataclass(frozen=True)
class Seen:
    """A history item with the knob values it changed from (`old`, when known) and to (`new`)."""

    item: HistoryItem
    old: dict[str, Any]
    new: dict[str, Any]


def _diff_sides(diff: str) -> tuple[dict[str, str], dict[str, str]]:
    """The removed and the added lines of a unified diff, per file."""
    removed: dict[str, list[str]] = {}
    added: dict[str, list[str]] = {}
    file = ""
    for line in diff.splitlines():
        header = _NEW_FILE.match(line)
        if header:
            file = header.group(1)
        elif line.startswith("-") and not line.startswith("--- "):
            removed.setdefault(file, []).append(line[1:])
        elif line.startswith("+"):
            added.setdefault(file, []).append(line[1:])
    return ({f: "\n".join(v) for f, v in removed.items()}, {f: "\n".join(v) for f, v in added.items()})


def _values_in(side: Mapping[str, str], knobs: Mapping[str, Knob]) -> dict[str, Any]:
    """The knob values that one side of a diff sets."""
    found = {name: read_value(side, knob) for name, knob in knobs.items() if knob.name in side.get(knob.file, "")}
    return {name: value for name, value in found.items() if value is not MISSING}


def seen_item(item: HistoryItem, knobs: Mapping[str, Knob]) -> Seen:
    """Parse one item; `changes` wins over the diff, which covers items whose proposer gave none."""
    removed, added = _diff_sides(item.diff)
    new = {n: norm_value(knobs.get(n), v) for n, v in item.changes.items()} or _values_in(added, knobs)
    return Seen(item, _values_in(removed, knobs), new)


def parse_history(context: ProposalContext, knobs: Mapping[str, Knob]) -> tuple[list[Seen], set[Key]]:
    """The parsed history, and the keys of changes tried on the incumbent or still in flight anywhere."""
    seen = [seen_item(item, knobs) for item in context.history]
    taken = {change_key(s.new) for s in seen if s.item.parent_candidate_id == context.incumbent_id
             or s.item.status in PENDING}
    return seen, taken
