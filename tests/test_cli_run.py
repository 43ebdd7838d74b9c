"""`ledgerlab run` / `resume` end to end on the marketing domain (fast runs), bad input, SIGINT and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _events(folder: Path) -> list[str]:
    with DuckDBLedger(folder / ".ledgerlab" / "ledger.duckdb") as store:
        return [row.type for cid in store.campaign_ids() for row in store.read(cid)]


def test_run_finishes_a_short_campaign_and_status_shows_it(tmp_path: Path) -> None:
    code, out = _cli("run", "marketing", "--dir", str(tmp_path), "--max-hypotheses", "3", "--seed", "1")
    assert code == 0, out
    assert "finished (max_hypotheses)" in out and "proposes" in out
    seen = _events(tmp_path)
    assert seen[0] == "CampaignStarted" and seen[-2:] == ["CampaignFinished", "CheckpointSigned"]
    assert seen.count("HypothesisProposed") == 3
    code, out = _cli("status", "--dir", str(tmp_path))
    assert code == 0, out
    code, out = _cli("sql", "select count(*) as n from verdicts", "--dir", str(tmp_path), "--format", "json")
    assert code == 0 and json.loads(out)[0]["n"] >= 1


def test_command_line_overrides_the_toml(tmp_path: Path) -> None:
    (tmp_path / "ledgerlab.toml").write_text('domain = "marketing"\n[budgets]\nmax_hypotheses = 50\n')
    code, out = _cli("run", "--dir", str(tmp_path), "--max-hypotheses", "1", "--judge", "greedy")
    assert code == 0, out
    assert _events(tmp_path).count("HypothesisProposed") == 1
    code, out = _cli("sql", "select distinct test from verdicts", "--dir", str(tmp_path), "--format", "csv")
    assert "greedy" in out


def test_unknown_domain_and_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    code, out = _cli("run", "nosuch", "--dir", str(tmp_path))
    assert code == 2 and "unknown domain 'nosuch'" in out and "Traceback" not in out
    code, out = _cli("run", "marketing", "--dir", str(tmp_path), "--option", "visitors=3")
    assert code == 2 and "unknown option" in out
    code, out = _cli("run", "marketing", "--dir", str(tmp_path), "--time-limit", "soon")
    assert code == 2 and "duration" in out
    code, out = _cli("run", "marketing", "--dir", str(tmp_path), "--proposer", "oracle")
    assert code == 2 and "unknown proposer" in out
    code, out = _cli("run", "--dir", str(tmp_path))
    assert code == 2 and "no domain given" in out


def test_malformed_toml_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "ledgerlab.toml").write_text("domain = marketing\n[budgets\n")
    code, out = _cli("run", "--dir", str(tmp_path))
    assert code == 2 and "ledgerlab.toml" in out and len(out.strip().splitlines()) == 1
    (tmp_path / "ledgerlab.toml").write_text('domain = "marketing"\n[budgets]\nmax_hypothesis = 3\n')
    code, out = _cli("run", "--dir", str(tmp_path))
    assert code == 2 and "max_hypothesis" in out


def test_resume_without_an_unfinished_campaign_says_what_to_do(tmp_path: Path) -> None:
    code, out = _cli("resume", "--dir", str(tmp_path))
    assert code == 2 and "ledgerlab run" in out


def _spawn(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ledgerlab", "run", "marketing", "--dir", str(folder),
                             "--max-hypotheses", "200", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_runs(folder: Path, proc: subprocess.Popen[str], n: int, timeout: float = 60.0) -> None:
    """Poll the ledger read-only (as another process would) until `n` runs finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        code, out = _cli("sql", "select count(*) as n from runs where status = 'finished'", "--dir", str(folder),
                         "--format", "json")
        if code == 0 and json.loads(out)[0]["n"] >= n:
            return
        time.sleep(0.3)
    raise AssertionError("the campaign made no progress")


def test_sigint_pauses_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    proc = _spawn(tmp_path)
    _wait_for_runs(tmp_path, proc, 4)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "paused: interrupted (SIGINT)" in out and "Traceback" not in out
    assert _events(tmp_path)[-2:] == ["CampaignPaused", "CheckpointSigned"]
    code, out = _cli("resume", "--dir", str(tmp_path), "--max-hypotheses", "6")
    assert code == 0, out
    assert _events(tmp_path)[-2:] == ["CampaignFinished", "CheckpointSigned"]


def test_kill_9_loses_nothing_and_resume_reruns_unfinished_runs(tmp_path: Path) -> None:
    proc = _spawn(tmp_path)
    _wait_for_runs(tmp_path, proc, 5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    before = _events(tmp_path)
    code, out = _cli("verify", "--dir", str(tmp_path))
    assert code == 0, out
    code, out = _cli("resume", "--dir", str(tmp_path), "--max-hypotheses", "6")
    assert code == 0, out
    after = _events(tmp_path)
    assert after[: len(before)] == before  # nothing committed was lost
    assert "CampaignResumed" in after and after[-2:] == ["CampaignFinished", "CheckpointSigned"]
    code, out = _cli("sql", "select count(*) as n from runs where status = 'running'", "--dir", str(tmp_path),
                     "--format", "json")
    assert json.loads(out)[0]["n"] == 0
    code, out = _cli("sql", "select count(*) - count(distinct hypothesis_id) as dup from verdicts", "--dir",
                     str(tmp_path), "--format", "json")
    assert json.loads(out)[0]["dup"] == 0
    assert _cli("verify", "--dir", str(tmp_path))[0] == 0


def test_a_second_runner_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    proc = _spawn(tmp_path)
    try:
        _wait_for_runs(tmp_path, proc, 1)
        code, out = _cli("run", "marketing", "--dir", str(tmp_path), "--new")
        assert code == 2 and "another `ledgerlab run`" in out and str(proc.pid) in out
        code, out = _cli("status", "--dir", str(tmp_path))  # readers are not affected
        assert code == 0, out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_resume_takes_the_visitor_budget_too(tmp_path: Path) -> None:
    proc = _spawn(tmp_path)
    _wait_for_runs(tmp_path, proc, 3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    code, out = _cli("resume", "--dir", str(tmp_path), "--max-units", "200000")
    assert code == 0, out
    code, out = _cli("sql", "select payload->>'reason' as reason from events where type = 'CampaignFinished'",
                     "--dir", str(tmp_path), "--format", "json")
    assert code == 0 and json.loads(out)[0]["reason"] == "max_units", out


def test_resuming_with_another_run_design_is_refused(tmp_path: Path) -> None:
    """A hypothesis's runs are pooled into one test, so a campaign keeps the run design it started with."""
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.executors.local import LocalExecutor
    from ledgerlab.core.proposers.knob import KnobProposer
    from ledgerlab.domains.marketing.domain import MarketingDomain

    domain = MarketingDomain()
    config = CampaignConfig(domain="marketing", budgets={"max_hypotheses": 9})
    with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
        first = Campaign(store, domain, config, agents=[Agent("agent-0", KnobProposer())],
                         executor=LocalExecutor(domain), runs_dir=tmp_path / "runs")
        first.on_event = lambda row: first.request_stop("test") if row.type == "RunFinished" else None
        assert first.run().status == "paused"
        assert first.state.started is not None
        assert first.state.started.environment["run_design"] == {"candidates_per_run": 3, "factorial": True}
    domain.close()
    code, out = _cli("run", "--dir", str(tmp_path), "--option", "factorial=false")
    assert code == 2 and "factorial = True (now False)" in out and "--new" in out, out
    assert "Traceback" not in out
    code, out = _cli("resume", "--dir", str(tmp_path))
    assert code == 0 and "finished" in out, out
