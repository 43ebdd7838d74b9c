"""Read an LLM's answer: a hypothesis paragraph, then SEARCH/REPLACE blocks or a unified diff → new files.

    split_reasoning(text)         → (reasoning, answer): a reasoning model's <think> block taken off the front
    split_answer(text)            → Answer(rationale, edit_text, kind)
    apply_answer(files, answer)   → the full new files, or PatchError with a reason the model can act on

Every error message is written to be sent back to the model verbatim in the repair round-trip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ledgerlab.core.patches import apply_diff
from ledgerlab.errors import PatchError

RATIONALE_CHARS = 1200  # the hypothesis text is one paragraph; longer answers are cut with an ellipsis

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_DIFF_START = re.compile(r"^(diff --git |--- \S)")
_DIFF_LINE = re.compile(r"^(diff |--- |\+\+\+ |@@|[ +\-\\]|index |new file|deleted file|similarity|rename |old mode|new mode)")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


@dataclass(frozen=True)
class Answer:
    """A model's answer split in two: the hypothesis text and the edit that follows it."""

    rationale: str
    edit_text: str
    kind: Literal["search_replace", "diff", "none"]


# ------------------------------------------------------------------------------------------ splitting

# A reasoning model's thoughts before its answer. litellm already moves a block that opens the text into
# `reasoning_content`; these are the forms it leaves: whitespace before the tag, a chat template that put the
# opening tag in the prompt (only `</think>` comes back), and a block cut off by max_tokens (no closing tag).
_THINK_BLOCK = re.compile(r"\A\s*<(think|thinking|reasoning)>(.*?)(?:</\1>|\Z)", re.S | re.I)
_THINK_CLOSE = re.compile(r"^</(think|thinking|reasoning)>", re.I | re.M)  # at a line's start: not a diff line


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer): a leading <think>…</think> block taken off the answer, or ("", text)."""
    text = text or ""
    block = _THINK_BLOCK.match(text)
    if block:
        return block.group(2).strip(), text[block.end():].lstrip("\n")
    close = _THINK_CLOSE.search(text)
    if close:
        before = text[: close.start()]
        # The thoughts may draft an edit; a tag inside an unfinished SEARCH/REPLACE block is a file's text.
        in_block = False
        for line in before.splitlines():
            in_block = bool(_SEARCH.match(line)) or (in_block and not _REPLACE.match(line))
        if not in_block and f"<{close.group(1).lower()}>" not in before.lower():  # a closing tag of its own
            return before.strip(), text[close.end():].lstrip("\n")
    return "", text


def split_answer(text: str) -> Answer:
    """Find where the edit starts; what comes before it is the rationale (one paragraph, capped)."""
    lines = (text or "").splitlines(keepends=True)
    marker = next((i for i, line in enumerate(lines) if _SEARCH.match(line)), None)
    if marker is not None:
        start = marker
        # Walk back over the file-name line and an opening fence so they belong to the edit.
        j = marker - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and _FENCE.match(lines[j]):
            start, j = j, j - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
        if j >= 0 and _file_name(lines[j]) is not None:
            start = j
        return Answer(_clean_rationale("".join(lines[:start])), "".join(lines[start:]), "search_replace")
    diff_at = next((i for i, line in enumerate(lines) if _DIFF_START.match(line)), None)
    if diff_at is not None and any(line.startswith("+++ ") for line in lines[diff_at:]):
        start = diff_at
        if start > 0 and _FENCE.match(lines[start - 1]):
            start -= 1
        return Answer(_clean_rationale("".join(lines[:start])), "".join(lines[start:]), "diff")
    return Answer(_clean_rationale(text or ""), "", "none")


def _clean_rationale(text: str) -> str:
    kept = [line for line in text.splitlines() if not _FENCE.match(line)]
    joined = " ".join(" ".join(kept).split())
    joined = re.sub(r"^[#*\s]*(hypothesis|rationale)\s*[:.\-]*\s*[*]*\s*", "", joined, flags=re.I)
    if len(joined) > RATIONALE_CHARS:
        joined = joined[: RATIONALE_CHARS - 1].rstrip() + "…"
    return joined


def _file_name(line: str, files: Mapping[str, str] | None = None) -> str | None:
    """The file name a line names ('train.py', '`train.py`', '**File: train.py**'), or None.

    A bare word counts only when it is one of `files` (so 'Change:' before a block is not a file name).
    """
    name = line.strip().strip("*`'\"").strip()
    name = re.sub(r"^(#+\s*)?(file(name)?\s*:\s*)?", "", name, flags=re.I).strip("*`'\" ").rstrip(":")
    if not name or " " in name or _FENCE.match(name) or _SEARCH.match(name) or len(name) > 200:
        return None
    if name.startswith("./"):
        name = name[2:]
    if not re.fullmatch(r"[\w./\-]+", name) or not re.search(r"\w", name):
        return None
    return name if ("." in name.strip(".") or "/" in name or name in (files or {})) else None


# ------------------------------------------------------------------------------------------- applying


def apply_answer(files: Mapping[str, str], answer: Answer) -> dict[str, str]:
    """The incumbent's files with the answer's edit applied; PatchError says what is wrong."""
    if answer.kind == "search_replace":
        new = apply_search_replace(files, answer.edit_text)
    elif answer.kind == "diff":
        new = apply_unified_diff(files, answer.edit_text)
    else:
        raise PatchError(
            "no edit found: the answer has no SEARCH/REPLACE block and no unified diff; "
            "write the hypothesis paragraph, then the edit in the required format"
        )
    if new == dict(files):
        raise PatchError("the edit changes nothing: the new files equal the current ones; make a real change")
    return new


def apply_search_replace(files: Mapping[str, str], edit_text: str) -> dict[str, str]:
    """Apply SEARCH/REPLACE blocks in order (each sees the result of the ones before it)."""
    blocks = _parse_blocks(edit_text, files)
    if not blocks:
        raise PatchError("no edit found: no complete '<<<<<<< SEARCH' / '=======' / '>>>>>>> REPLACE' block")
    new = dict(files)
    for number, (name, search, replace) in enumerate(blocks, start=1):
        new[name] = _replace_once(new[name], search, replace, f"SEARCH text of block {number}", name)
    return new


def _parse_blocks(text: str, files: Mapping[str, str]) -> list[tuple[str, str, str]]:
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[str, str, str]] = []
    name: str | None = None
    candidate: str | None = None  # the last non-blank, non-fence line before a block
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _SEARCH.match(line):
            if line.strip() and not _FENCE.match(line):
                candidate = _file_name(line, files)
            i += 1
            continue
        number = len(blocks) + 1
        if candidate is not None:
            name = candidate
        elif name is None and len(files) == 1:
            name = next(iter(files))
        if name is None:
            raise PatchError(
                f"block {number} has no file name: put the file name alone on the line before '<<<<<<< SEARCH'"
            )
        name = _check_name(name, files)
        search, i = _collect(lines, i + 1, _DIVIDER, number, "=======")
        replace, i = _collect(lines, i, _REPLACE, number, ">>>>>>> REPLACE")
        blocks.append((name, search, replace))
        candidate = None
    return blocks


def _collect(lines: list[str], i: int, end: re.Pattern[str], number: int, expected: str) -> tuple[str, int]:
    start = i
    while i < len(lines) and not end.match(lines[i]):
        if _SEARCH.match(lines[i]) or (expected == "=======" and _REPLACE.match(lines[i])):
            break
        i += 1
    if i >= len(lines) or not end.match(lines[i]):
        raise PatchError(f"block {number} is not closed: expected a line '{expected}'")
    return "".join(lines[start:i]), i + 1


def _check_name(name: str, files: Mapping[str, str]) -> str:
    if name in files:
        return name
    stripped = name[2:] if name[:2] in ("a/", "b/") else name
    if stripped in files:
        return stripped
    basename = [f for f in files if f.rsplit("/", 1)[-1] == name]
    if len(basename) == 1:
        return basename[0]
    raise PatchError(
        f"the edit touches a file outside the artifact: {name} (only these files may change: {', '.join(sorted(files))})"
    )


def _replace_once(text: str, search: str, replace: str, what: str, name: str) -> str:
    """Replace the one occurrence of `search`; exact first, then ignoring trailing whitespace per line."""
    added_newline = bool(text) and not text.endswith("\n")
    work = text + "\n" if added_newline else text
    if search and not search.endswith("\n"):
        search += "\n"
    if replace and not replace.endswith("\n"):
        replace += "\n"
    if not search.strip():
        if work.strip():
            raise PatchError(f"{what} is empty: copy the lines to change from {name} into the SEARCH section")
        result = replace
    else:
        count = work.count(search)
        if count == 1:
            result = work.replace(search, replace, 1)
        elif count > 1:
            raise PatchError(
                f"{what} matches {count} places in {name}: include more surrounding lines so it matches once"
            )
        else:
            result = _replace_loose(work, search, replace, what, name)
    if added_newline and result.endswith("\n"):
        result = result[:-1]
    return result


def _replace_loose(text: str, search: str, replace: str, what: str, name: str) -> str:
    lines = text.splitlines(keepends=True)
    wanted = [line.rstrip() for line in search.splitlines()]
    have = [line.rstrip() for line in lines]
    hits = [i for i in range(len(have) - len(wanted) + 1) if have[i : i + len(wanted)] == wanted]
    if len(hits) == 1:
        i = hits[0]
        return "".join(lines[:i]) + replace + "".join(lines[i + len(wanted) :])
    if hits:
        raise PatchError(f"{what} matches {len(hits)} places in {name}: include more surrounding lines so it matches once")
    first = next((line for line in wanted if line.strip()), "")[:80]
    raise PatchError(
        f"{what} was not found in {name} (it starts with {first!r}); copy the lines exactly as they are in the "
        f"current file, including indentation"
    )


# --------------------------------------------------------------------------------------- unified diff


def extract_diff(edit_text: str) -> str:
    """The diff lines of an answer: from its first header to the first line that is not part of a diff."""
    out: list[str] = []
    started = False
    for line in edit_text.splitlines(keepends=True):
        if not started:
            started = bool(_DIFF_START.match(line))
            if not started:
                continue
        if _FENCE.match(line):
            break
        if not line.strip():
            line = " \n"  # a blank context line whose leading space the model dropped
        elif not _DIFF_LINE.match(line):
            break
        out.append(line)
    while out and out[-1] == " \n":
        out.pop()
    return "".join(out)


def apply_unified_diff(files: Mapping[str, str], edit_text: str) -> dict[str, str]:
    """Apply a unified diff: `git apply` first, then hunk by hunk by content (models miscount line numbers)."""
    diff = _normalize_headers(extract_diff(edit_text), files)
    if "+++ " not in diff or "@@" not in diff:
        raise PatchError("the unified diff has no '+++ b/FILE' header or no '@@' hunk; write a complete diff")
    try:
        return apply_diff(files, diff)
    except PatchError as exc:
        if "outside the artifact" in str(exc):
            raise
        strict = str(exc)
    try:
        return _apply_hunks(files, diff)
    except PatchError as exc:
        raise PatchError(f"{strict}; applying the hunks by their content also failed: {exc}") from None


def _normalize_headers(diff: str, files: Mapping[str, str]) -> str:
    out = []
    for line in diff.splitlines(keepends=True):
        match = re.match(r"^(---|\+\+\+) (\S+)", line)
        if match:
            path = match.group(2)
            if path == "/dev/null":
                what = "deleting" if match.group(1) == "+++" else "creating"
                raise PatchError(f"{what} files is not allowed: edit only these files: {', '.join(sorted(files))}")
            name = _check_name(path[2:] if path[:2] in ("a/", "b/") else path.removeprefix("./"), files)
            line = f"{match.group(1)} {'a' if match.group(1) == '---' else 'b'}/{name}\n"
        out.append(line)
    return "".join(out)


def _apply_hunks(files: Mapping[str, str], diff: str) -> dict[str, str]:
    new = dict(files)
    name: str | None = None
    hunk: list[str] | None = None
    line_no = 0
    number = 0

    def flush() -> None:
        if name is None or hunk is None:
            return
        old = "".join(h[1:] for h in hunk if h[:1] in (" ", "-"))
        fresh = "".join(h[1:] for h in hunk if h[:1] in (" ", "+"))
        new[name] = _replace_near(new[name], old, fresh, line_no, f"hunk {number}", name)

    for line in diff.splitlines(keepends=True):
        if line.startswith("+++ "):
            flush()
            hunk, name = None, line[6:].strip()
        elif line.startswith("@@"):
            flush()
            match = _HUNK.match(line)
            number, line_no, hunk = number + 1, int(match.group(1)) if match else 0, []
        elif hunk is not None and line[:1] in (" ", "+", "-"):
            hunk.append(line)
    flush()
    return new


def _replace_near(text: str, old: str, fresh: str, line_no: int, what: str, name: str) -> str:
    # Several matches: take the one nearest the hunk's stated line number.
    if old.strip() and text.count(old) > 1:
        starts, at = [], text.find(old)
        while at >= 0:
            starts.append(at)
            at = text.find(old, at + 1)
        best = min(starts, key=lambda s: abs(text.count("\n", 0, s) + 1 - line_no))
        return text[:best] + fresh + text[best + len(old) :]
    return _replace_once(text, old, fresh, what, name)
