"""bench/gpu_profile.py's `run` as a dry run on this machine's CPU: it must work the first time on a GPU machine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_a_step_out_of_time_is_stopped_with_sigterm_and_recorded(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gp = _module()
    monkeypatch.setattr(gp, "MIN_STEP_S", 0.5)
    # 15 s for the step: time enough for the child to start on a loaded machine before it is stopped.
    steps = gp.Steps(tmp_path, deadline_s=gp.GRACE_S + 15, env=dict(os.environ))
    # The child says it started, then waits; SIGTERM makes it say so and exit as a paused transfer does.
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(3)))\n"
             "print('started', flush=True)\n"
             "time.sleep(600)\n")
    assert steps.run("slow", [sys.executable, "-c", child], log="slow.log") == 124
    record = steps.records["slow"]
    assert "started" in record["tail"] and "got SIGTERM" in record["tail"] and "[stopped after" in record["tail"]
    assert (tmp_path / "slow.log").read_text() == record["tail"]
    assert steps.run("next", [sys.executable, "-c", "pass"]) == -1  # nothing left: skipped, and recorded so
    assert steps.records["next"]["rc"] is None and "skipped" in steps.records["next"]["tail"]


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_profile", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
