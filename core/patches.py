"""Candidates as text: content ids, canonical unified diffs, and applying a diff (with `git apply`)."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ledgerlab.errors import PatchError

_DIFF_PATH = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?(?P<path>\S+)", re.M)


def candidate_id(files: Mapping[str, str]) -> str:
    """The SHA-256 of an artifact's files (names and contents, order-independent)."""
    canonical = json.dumps(sorted(files.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def make_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """The canonical unified diff (git-style a/ b/ paths) that turns `old` into `new`."""
    if set(old) != set(new):
        extra = sorted(set(old) ^ set(new))
        raise PatchError(f"a candidate must keep the artifact's files; these differ: {', '.join(extra)}")
    chunks = []
    for name in sorted(old):
        if old[name] == new[name]:
            continue
        lines = difflib.unified_diff(
            _lines(old[name]), _lines(new[name]), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
        chunks.append(f"diff --git a/{name} b/{name}\n" + "".join(lines))
    return "".join(chunks)


def _lines(text: str) -> list[str]:
    # A last line without newline would make an ambiguous diff; git marks it, difflib doesn't.
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def touched_files(diff: str) -> set[str]:
    """The file names a unified diff touches."""
    return {m.group("path") for m in _DIFF_PATH.finditer(diff) if m.group("path") != "/dev/null"}


def apply_diff(files: Mapping[str, str], diff: str) -> dict[str, str]:
    """Apply a unified diff to the artifact; PatchError names what failed."""
    if not diff.strip():
        return dict(files)
    outside = touched_files(diff) - set(files)
    if outside:
        raise PatchError(f"the patch touches files outside the artifact: {', '.join(sorted(outside))}")
    git = shutil.which("git")
    if git is None:
        raise PatchError("applying patches needs git on PATH: install git")
    with tempfile.TemporaryDirectory(prefix="ledgerlab-patch-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8", newline="")
        done = subprocess.run(
            [git, "apply", "--unsafe-paths", "--whitespace=nowarn", "-"],
            input=diff.encode(), cwd=root, capture_output=True, timeout=30,
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise PatchError("patch does not apply: " + ("; ".join(message[:3]) or "git apply failed"))
        return {name: (root / name).read_text(encoding="utf-8") for name in files}
