"""One runner per folder by the OS lock on `.ledgerlab`, and a dead runner shown as such (core/runner_lock.py).

Real `ledgerlab run marketing` processes on real DuckDB files: a second runner is refused with the holder's
pid whatever is done to the files in `.ledgerlab/`; kill -9 leaves "stopped unexpectedly" (never "running")
until `resume`; an error that ends the loop (an append that fails) records CampaignPaused.
Every wait is on a condition, with a generous deadline (the tests share a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from host_processes import Runner
from host_processes import until as _until
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.project import Project
from ledgerlab.core.runner_lock import RunnerLocked, hold, holder_pid, runner_alive
from ledgerlab.errors import LedgerError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
runner = CliRunner(env={"COLUMNS": "500"})
# ≈ 0.2 s a run on the dev box, so a campaign of 200 hypotheses outlives every test and runs are in flight.
SLOW = ("--option", "visitors_per_run=1000000")
# Confirmation runs after an accept and the closing holdback (up to 14 more runs) prove nothing
# here: the campaigns that resume skip them.
LEAN_JUDGE = "[judge]\nconfirm_runs = 0\nholdback_max_runs = 0\nholdback_max_pairs = 0\n"


def _lean_judge(folder: Path) -> None:
    (folder / "ledgerlab.toml").write_text(LEAN_JUDGE, encoding="utf-8")


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def _sql(folder: Path, query: str) -> list[dict[str, Any]]:
    code, out = _cli("sql", query, "--dir", str(folder), "--format", "json")
    assert code == 0, out
    return json.loads(out)


def _finished_runs(folder: Path) -> int:
    if not (folder / ".ledgerlab" / "ledger.duckdb").exists():
        return 0
    code, out = _cli("sql", "select count(*) as n from runs where status = 'finished'", "--dir", str(folder),
                     "--format", "json")
    return json.loads(out)[0]["n"] if code == 0 else 0


def _report(folder: Path) -> dict[str, Any]:
    code, out = _cli("status", "--format", "json", "--dir", str(folder))
    assert code == 0, out
    return json.loads(out)


def _types(folder: Path) -> list[str]:
    return [r["type"] for r in _sql(folder, "select type from events order by seq")]


# ------------------------------------------------------------------------------------ one runner


def test_a_second_runner_is_refused_whatever_happens_to_the_files(tmp_path: Path) -> None:
    first = Runner(tmp_path, "run", "marketing", "--max-hypotheses", "200", *SLOW)
    try:
        _until("a finished run", lambda: _finished_runs(tmp_path) >= 1, first.proc)
        state = tmp_path / ".ledgerlab"
        assert (state / "run.lock").read_text().strip() == str(first.proc.pid)

        def refused(*args: str) -> None:
            code, out = _cli(*args, "--dir", str(tmp_path))
            assert code == 2 and "another `ledgerlab run`" in out and f"pid {first.proc.pid}" in out, out

        def attack_all() -> None:
            refused("run", "marketing", "--new")
            refused("resume")
            refused("sign")

        attack_all()
        (state / "run.lock").unlink()  # the attack found in the issue
        attack_all()
        (state / "run.lock").write_text("999999\n")  # a forged pid file
        attack_all()
        (state / "run.lock").chmod(0o000)
        attack_all()
        (state / "run.lock").unlink()
        (state / "run.lock").mkdir()  # a path nobody can lock or write as a file
        attack_all()
        (state / "run.lock").rmdir()
        for extra in state.glob("ledger.duckdb.readers"):
            extra.unlink()
        attack_all()
        assert runner_alive(Project.at(tmp_path)) is True and holder_pid(Project.at(tmp_path)) == first.proc.pid
        assert _report(tmp_path)["status"] == "running"
        assert first.proc.poll() is None, first.output  # the first runner never noticed
        first.proc.send_signal(signal.SIGINT)
        assert first.wait() == 0, first.output
    finally:
        first.stop()
    # (Not "no Traceback": the embedded market service may log a connection reset by the interrupted run.)
    assert "paused: interrupted (SIGINT)" in _flat(first.output)
    assert _types(tmp_path)[-2:] == ["CampaignPaused", "CheckpointSigned"]
    assert _cli("verify", "--dir", str(tmp_path))[0] == 0
    assert runner_alive(Project.at(tmp_path)) is False


def test_a_runner_whose_folder_is_swapped_stops_instead_of_writing(tmp_path: Path) -> None:
    """`mv .ledgerlab old; mkdir .ledgerlab` lets a second runner lock the new folder: the first must notice."""
    project = Project.at(tmp_path)
    with hold(project) as lock:
        store = DuckDBLedger(project.ledger_path, guard=lock.check)
        store.append("c", [ev.CampaignPaused(reason="one")], expected_version=0)
        store.close()
        project.state_dir.rename(tmp_path / "moved")
        with hold(project):  # the new folder is free: only the guard keeps the first writer out of it
            with pytest.raises(LedgerError, match="moved, deleted or replaced"):
                store.append("c", [ev.CampaignPaused(reason="two")], expected_version=1)
        assert not project.ledger_path.exists()
    with DuckDBLedger(tmp_path / "moved" / "ledger.duckdb") as old:
        assert [r.event().reason for r in old.read("c")] == ["one"]  # type: ignore[attr-defined]


def test_the_pid_file_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """A link at the pid file's old, guessable temporary name (run.lock.<pid>.tmp) must not be written through."""
    project = Project.at(tmp_path)
    project.state_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (project.state_dir / f"run.lock.{os.getpid()}.tmp").symlink_to(victim)
    with hold(project):
        assert holder_pid(project) == os.getpid()
    assert victim.read_text() == "keep me\n"
    assert not (project.state_dir / "run.lock").is_symlink()


def test_the_lock_is_not_inherited_by_forked_workers(tmp_path: Path) -> None:
    """A worker forked by the runner and left alive after it must not keep the folder locked."""
    project = Project.at(tmp_path)
    read_end, write_end = os.pipe()
    ready_read, ready_write = os.pipe()
    with hold(project):
        child = os.fork()
        if child == 0:  # the worker: say it runs (its fork hooks have run), then wait until the parent closes the pipe
            os.close(write_end)
            os.write(ready_write, b"r")
            os.read(read_end, 1)
            os._exit(0)
        with pytest.raises(RunnerLocked) as refused:
            with hold(project):
                pass
        assert refused.value.pid == os.getpid()
    # Asked once the child runs: on a loaded machine it may not have been scheduled yet when `hold` ends.
    assert os.read(ready_read, 1) == b"r"
    os.close(ready_read)
    os.close(ready_write)
    try:
        assert runner_alive(project) is False  # the child still runs, and holds nothing
        with hold(project):
            pass
    finally:
        os.close(write_end)
        os.close(read_end)
        os.waitpid(child, 0)


def test_status_probes_never_turn_a_starting_runner_away(tmp_path: Path) -> None:
    project = Project.at(tmp_path)
    project.state_dir.mkdir(parents=True)
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            runner_alive(project)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        for _ in range(50):
            with hold(project):
                pass
    finally:
        done.set()
        thread.join()


# ------------------------------------------------------------------------------------ a dead runner


def test_kill_9_is_shown_as_stopped_unexpectedly_until_resume(tmp_path: Path) -> None:
    _lean_judge(tmp_path)
    first = Runner(tmp_path, "run", "marketing", "--max-hypotheses", "200", *SLOW)
    try:
        _until("two finished runs and one in flight", lambda: _finished_runs(tmp_path) >= 2 and _sql(
            tmp_path, "select count(*) as n from runs where status = 'running'")[0]["n"] >= 1, first.proc)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.wait()
    finally:
        first.stop()
    in_flight = {r["run_id"] for r in _sql(tmp_path, "select run_id from runs where status = 'running'")}
    last_at = _sql(tmp_path, "select max(recorded_at) as t from events")[0]["t"]

    report = _report(tmp_path)
    assert report["status"] == "stopped_unexpectedly" and report["runner_alive"] is False
    assert report["resume_hint"] == "ledgerlab resume"
    assert report["stopped_at"].startswith(str(last_at).replace(" ", "T")[:19])
    assert report["running_now"]["interrupted"] is True
    assert {r["run_id"] for r in report["running_now"]["runs"]} == in_flight
    code, out = _cli("status", "--dir", str(tmp_path))
    assert code == 0 and "stopped unexpectedly at" in out and "`ledgerlab resume`" in out, out
    if in_flight:  # a run was in flight at the kill (nearly always: runs take ≈ 0.5 s, the gaps ms)
        assert f"{len(in_flight)} interrupted, re-run on resume:" in out and "running:" not in out
        assert all(run_id in out for run_id in in_flight)

    hypotheses = _sql(tmp_path, "select count(*) as n from hypotheses")[0]["n"]
    # no new hypothesis: the resume re-runs what was in flight and finishes the hypotheses already proposed
    second = Runner(tmp_path, "resume", "--max-hypotheses", str(max(hypotheses, 1)))
    try:
        _until("the resume", lambda: "CampaignResumed" in _types(tmp_path) or second.proc.poll() is not None)
        assert _report(tmp_path)["status"] in ("running", "finished")  # a live runner, or already done
        assert second.wait() == 0, second.output
    finally:
        second.stop()
    report = _report(tmp_path)
    assert report["status"] == "finished" and report["running_now"]["runs"] == []
    assert _cli("verify", "--dir", str(tmp_path))[0] == 0


# Loaded into the runner by PYTHONPATH: its next append after FAULT_FILE appears raises, once, as a full disk or
# a broken file would (a reader holding the ledger can no longer do it: storage/server.py).
FAULT_HOOK = """
import os
from ledgerlab.errors import LedgerError
from ledgerlab.storage.ledger import DuckDBLedger

_append = DuckDBLedger.append


def append(self, *args, **kwargs):
    flag = os.environ.get("LEDGERLAB_TEST_FAULT", "")
    if flag and os.path.exists(flag):
        os.unlink(flag)
        raise LedgerError("injected: the disk is full")
    return _append(self, *args, **kwargs)


DuckDBLedger.append = append
"""


def test_an_error_that_ends_the_loop_records_campaign_paused(tmp_path: Path) -> None:
    """An append that fails stops the runner with one line, and the pause is recorded once it can be."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAULT_HOOK)
    fault = tmp_path / "fault"
    _lean_judge(tmp_path)
    first = Runner(tmp_path, "run", "marketing", "--max-hypotheses", "200", *SLOW,
                   env={"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
                        "LEDGERLAB_TEST_FAULT": str(fault)})
    try:
        _until("two finished runs", lambda: _finished_runs(tmp_path) >= 2, first.proc)
        fault.touch()
        _until("the runner stopping", lambda: "recording the pause" in _flat(first.output), first.proc)
        assert first.wait() == 2, first.output
    finally:
        first.stop()
    out = _flat(first.output)
    assert "error: injected: the disk is full" in out, out
    assert "sitecustomize.py" not in out  # a one-line error, not the traceback of the failed append
    types = _types(tmp_path)
    assert types[-2:] == ["CampaignPaused", "CheckpointSigned"] and types.count("CampaignPaused") == 1
    report = _report(tmp_path)
    assert report["status"] == "paused" and report["pause_reason"].startswith("stopped by an error: LedgerError")
    assert report["resume_hint"] == "ledgerlab resume" and report["running_now"]["interrupted"] is True
    code, text = _cli("status", "--dir", str(tmp_path))
    assert "paused: stopped by an error: LedgerError" in _flat(text) and "`ledgerlab resume`" in text, text
    hypotheses = _sql(tmp_path, "select count(*) as n from hypotheses")[0]["n"]
    code, text = _cli("resume", "--dir", str(tmp_path), "--max-hypotheses", str(max(hypotheses, 1)))
    assert code == 0, text
    assert _report(tmp_path)["status"] == "finished" and _cli("verify", "--dir", str(tmp_path))[0] == 0
