"""Where the sandbox is unavailable: `auto` falls back with one warning line, `strict` refuses, both recorded.

Each test runs the real CLI in a fresh process whose PATH has no bubblewrap (and, for the sandboxed case,
one that has it), so the probe in core/sandbox.py sees the machine as a user without it would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ledgerlab.core.sandbox import bwrap_problem, isolation_warning, resolve_isolation
from ledgerlab.errors import IsolationUnavailable

PY_DIR = str(Path(sys.executable).parent)


# The isolation is probed and recorded when the campaign starts; a run under each is in tests/test_ml_runs.py.
NO_RUN = ("--time-limit", "0.001")


def ledgerlab(folder: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "ledgerlab", *args, "--dir", str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)


def without_bwrap(tmp_path: Path) -> str:
    """A PATH with the usual tools but no bwrap (a folder of links to everything else in /usr/bin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "true", "sh"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    return f"{bin_dir}:{PY_DIR}"


def isolation_of(folder: Path) -> str:
    with duckdb.connect(str(folder / ".ledgerlab" / "ledger.duckdb"), read_only=True) as con:
        (payload,) = con.execute("select payload from events where type = 'CampaignStarted'").fetchone()
    return json.loads(payload)["environment"]["isolation"]


def configure(folder: Path, isolation: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "ledgerlab.toml").write_text(
        f'[domain]\nname = "ml_training"\nbudget_s = 1\neval_tokens = 2048\nthreads = 1\ndevice = "cpu"\n'
        f'[executor]\nisolation = "{isolation}"\n[judge]\ncalibration_runs = 1\n')


def test_strict_refuses_to_start_without_the_sandbox(tmp_path: Path) -> None:
    folder = tmp_path / "camp"
    configure(folder, "strict")
    done = ledgerlab(folder, "run", "--max-runs", "1", path=without_bwrap(tmp_path))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "strict" in message[0] and "bubblewrap is not installed" in message[0]


def test_auto_falls_back_with_one_warning_and_records_it(tmp_path: Path) -> None:
    folder = tmp_path / "camp"
    configure(folder, "auto")
    done = ledgerlab(folder, "run", *NO_RUN, path=without_bwrap(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if "not sandboxed" in line]
    assert len(warnings) == 1 and "bubblewrap is not installed" in warnings[0]
    assert isolation_of(folder) == "process"


@pytest.mark.skipif(bwrap_problem() is not None, reason=f"the sandbox is unavailable here: {bwrap_problem()}")
def test_a_sandboxed_campaign_records_bwrap_and_warns_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "camp"
    configure(folder, "strict")
    done = ledgerlab(folder, "run", *NO_RUN, path=os.environ["PATH"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not sandboxed" not in done.stdout and isolation_of(folder) == "bwrap"


def test_marketing_records_that_it_needs_no_sandbox(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    done = ledgerlab(folder, "run", "marketing", "--max-runs", "2", path=without_bwrap(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not sandboxed" not in done.stdout and isolation_of(folder) == "none"


def test_policies() -> None:
    assert resolve_isolation("process") == "process"
    assert isolation_warning("bwrap") is None
    assert "isolation = \"process\"" in (isolation_warning("process", "process") or "")
    with pytest.raises(IsolationUnavailable, match="must be one of"):
        resolve_isolation("chroot")
