"""`make lint` checks ledgerlab's code, not the campaign folders a user makes inside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A campaign's artifact as an agent may leave it: one that only ruff refuses, one that only mypy does.
ARTIFACTS = {"ruff": "import os\n", "mypy": 'steps: int = "many"\n'}

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (BIN / "ruff").exists() or not (BIN / "mypy").exists(),
    reason="needs make, ruff and mypy")


def _repo(tmp_path: Path) -> Path:
    """A tiny package with the project's Makefile and lint settings, and a linted venv of links to the tools."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt", ".ci/lint.py"):
        (repo / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    (repo / "__init__.py").write_text('"""A package."""\n')
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    for tool in ("ruff", "mypy"):
        (venv / tool).symlink_to(BIN / tool)
    (venv / "python").symlink_to(sys.executable)  # runs .ci/lint.py, which needs nothing but the standard library
    (repo / ".venv" / ".installed").touch()  # newer than pyproject.toml: make does not set the venv up again
    return repo


def _lint(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    # VENV on the command line: .ci/run exports its own, which would point make at a venv this copy lacks
    return subprocess.run(["make", "lint", "VENV=.venv", "PYTHON=false"], cwd=repo, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("tool", sorted(ARTIFACTS))
# Names as users write them: a space, brackets, a comma, `+` and parentheses are special to the tools' globs and
# regular expressions.
@pytest.mark.parametrize("folder", ["exp", "campaigns/night-1", "campaigns/night 2 (retry)+x", "w[1],z"])
def test_campaign_folders_are_left_out(tmp_path: Path, folder: str, tool: str) -> None:
    repo = _repo(tmp_path)
    campaign = repo / folder
    campaign.mkdir(parents=True)
    (campaign / "train.py").write_text(ARTIFACTS[tool])

    failed = _lint(repo)  # not a campaign folder yet: its code is linted, and `tool` refuses it
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert ("F401" in failed.stdout) == (tool == "ruff"), failed.stdout
    assert ("Incompatible types in assignment" in failed.stdout) == (tool == "mypy"), failed.stdout

    (campaign / "ledgerlab.toml").write_text('domain = "ml_training"\n')
    done = _lint(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
