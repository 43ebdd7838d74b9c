"""Read and write a knob: a line `NAME = literal` in an artifact file (Python or TOML)."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from ledgerlab.core.protocols import Knob
from ledgerlab.errors import PatchError


def _pattern(name: str) -> re.Pattern[str]:
    # The value ends before an inline comment; strings may not contain '#'.
    return re.compile(rf"^(?P<lead>{re.escape(name)}\s*(?::\s*[\w\[\], ]+)?=\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$", re.M)


def read_knob(files: dict[str, str], knob: Knob) -> Any:
    """The current value of `knob` in `files`."""
    text = files.get(knob.file)
    if text is None:
        raise PatchError(f"knob {knob.name}: file {knob.file!r} is not in the artifact")
    match = _pattern(knob.name).search(text)
    if match is None:
        raise PatchError(f"knob {knob.name}: no line '{knob.name} = ...' in {knob.file}")
    return _parse(match.group("value").strip(), knob.file)


def write_knob(files: dict[str, str], knob: Knob, value: Any) -> dict[str, str]:
    """A copy of `files` with `knob` set to `value` (only that line changes)."""
    text = files[knob.file]
    match = _pattern(knob.name).search(text)
    if match is None:
        raise PatchError(f"knob {knob.name}: no line '{knob.name} = ...' in {knob.file}")
    literal = _format(value, knob.file, match.group("value").strip())
    new = text[: match.start("value")] + literal + text[match.end("value"):]
    return {**files, knob.file: new}


def _parse(literal: str, file: str) -> Any:
    if file.endswith(".toml"):
        if literal in ("true", "false"):
            return literal == "true"
        if literal.startswith("'"):
            return literal[1:-1]  # a literal string: no escapes
        return json.loads(literal) if literal.startswith('"') else ast.literal_eval(literal.replace("_", ""))
    return ast.literal_eval(literal)


def _format(value: Any, file: str, old: str = "") -> str:
    """`value` as a literal for `file`; a string keeps the quote style of the literal it replaces (`old`)."""
    if isinstance(value, bool):
        return ("true" if value else "false") if file.endswith(".toml") else repr(value)
    if isinstance(value, float):
        return f"{value:.6g}" if "e" not in f"{value:.6g}" else f"{value:.3e}"
    if isinstance(value, str):
        return _string(value, file, old[:1] if old[:1] in ("'", '"') else "")
    return repr(value)


def _string(value: str, file: str, quote: str) -> str:
    """A string literal in `quote` where it can be written plainly, else the file type's usual form."""
    plain = value.isprintable() and "\\" not in value
    if quote == "'" and plain and "'" not in value:
        return f"'{value}'"  # a Python string or a TOML literal string
    if quote == '"' and plain and '"' not in value:
        return f'"{value}"'  # a Python string or a TOML basic string
    return json.dumps(value) if file.endswith(".toml") else repr(value)
