"""bench/gpu_profile.py's `run` as a dry run on this machine's CPU: it must work the first time on a GPU machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_profile.py"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="bench/ is scripts in the source tree")


def test_the_facts_step_records_the_sandbox_and_a_sandboxed_run(tmp_path: Path) -> None:
    out, stage = tmp_path / "out", tmp_path / "stage"  # an empty stage: nothing to install, no campaign
    stage.mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), "run", "--device", "cpu", "--steps", "facts",
                           "--stage", str(stage), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    facts = json.loads((out / "facts.json").read_text())
    assert facts["cuda"] is False and facts["isolation"] in ("bwrap", "process")
    run = facts["sandboxed_run"]
    assert run["exit_code"] == 0 and run["isolation"] == facts["isolation"]
    assert "sandboxed cpu 2.0" in run["tail"]  # the probe ran torch inside the sandbox
    report = json.loads((out / "gpu_profile.json").read_text())
    assert list(report["steps"]) == ["facts"] and report["steps"]["facts"]["rc"] == 0
    assert "facts" in done.stdout and f"wrote {out}" in done.stdout


def test_a_step_that_fails_is_recorded_and_the_script_says_so(tmp_path: Path) -> None:
    out, stage = tmp_path / "out", tmp_path / "stage"
    stage.mkdir()
    # No GPU here: the sandboxed probe on device cuda fails, and the facts step with it.
    done = subprocess.run([sys.executable, str(SCRIPT), "run", "--device", "cuda", "--steps", "facts",
                           "--stage", str(stage), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    report = json.loads((out / "gpu_profile.json").read_text())
    assert report["steps"]["facts"]["rc"] not in (0, None) and report["steps"]["facts"]["tail"]
