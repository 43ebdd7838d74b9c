"""`make lint`: ruff, then mypy, on ledgerlab's code, leaving out the campaign folders inside the repository.

    python .ci/lint.py VENV      # VENV: the virtual environment that has ruff and mypy (make passes $(VENV))

A campaign folder (any folder below the root holding a ledgerlab.toml: `make demo`'s, one made with
`ledgerlab init --dir NAME`, bench/gpu_profile.py's copy in .gpu/) holds a campaign's own artifacts, such as
the train.py an agent wrote, not ledgerlab's code. Its name goes to each tool as one argument, escaped for
ruff's globs and mypy's regular expressions, so a name with spaces, brackets or `+` is left out as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "ledgerlab.toml"


def campaign_dirs(root: Path) -> Iterator[str]:
    """Folders below `root` holding a ledgerlab.toml, relative, with / separators (virtualenvs and .git skipped)."""
    for here, dirs, files in os.walk(root):
        path = Path(here)
        if path != root and MARKER in files:
            dirs.clear()  # a campaign's own subfolders go with it
            yield path.relative_to(root).as_posix()
            continue
        dirs[:] = sorted(d for d in dirs if d != ".git" and not d.startswith(".venv"))


def ruff_glob(name: str) -> str:
    """`name` as a literal ruff glob: each special character in a class of its own, a backslash escaped, and a
    comma (ruff splits the option's value on commas) as `?`, any one character."""
    return "".join("?" if c == "," else "\\\\" if c == "\\" else f"[{c}]" if c in "*?[]{}" else c for c in name)


def main(venv: str) -> int:
    bin_dir = ROOT / venv / "bin"
    folders = list(campaign_dirs(ROOT))
    ruff = [str(bin_dir / "ruff"), "check", "."]
    for folder in folders:
        ruff += ["--extend-exclude", ruff_glob(folder)]
    if code := subprocess.run(ruff, cwd=ROOT).returncode:
        return code
    # mypy reads the package under the name it is imported by, `ledgerlab`; the repository root is that package,
    # so a link named ledgerlab in a folder of its own puts it on mypy's path (the editable install's import
    # hook is invisible to mypy).
    types_root = ROOT / venv / "typecheck"
    types_root.mkdir(parents=True, exist_ok=True)
    link = types_root / "ledgerlab"
    if not link.is_symlink() or os.readlink(link) != str(ROOT):
        link.unlink(missing_ok=True)
        link.symlink_to(ROOT)
    mypy = [str(bin_dir / "mypy"), "--cache-dir", str(ROOT / venv / "mypy-cache")]
    for folder in folders:
        mypy += ["--exclude", f"/ledgerlab/{re.escape(folder)}/"]
    env = {**os.environ, "MYPYPATH": str(types_root)}
    return subprocess.run([*mypy, "-p", "ledgerlab"], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python .ci/lint.py VENV")
    sys.exit(main(sys.argv[1]))
