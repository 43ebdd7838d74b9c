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


# ------------------------------------------------------------------------------ progress of runs in flight


class _Clock:
    """A clock the test moves by hand: heartbeats are checked against it, never against the wall."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console() -> tuple[object, object]:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_progress_lines_are_parsed_as_numbers_only() -> None:
    from ledgerlab.cli.progress import parse_progress

    log = ("harness: device cpu\nstep 00003 | tokens 6144 | loss 4.8156 |  12% of budget\n"
           "step 00010 | tokens 20480 | loss 3.1793 |  40% of budget\n[red]forged[/red] 99% of budget\n")
    p = parse_progress(log)
    assert p is not None and (p.step, p.tokens, p.loss, p.fraction) == (10, 20480, 3.1793, 0.4)
    assert parse_progress("nothing here\nstep x | tokens y") is None
    assert parse_progress("step 1 | tokens 2 | loss nan | 999% of budget").fraction == 1.0


def test_off_a_terminal_a_heartbeat_comes_after_30_s_of_silence_only(tmp_path: Path) -> None:
    from ledgerlab.cli.progress import RunProgress

    console, buffer = _console()
    clock = _Clock()
    progress = RunProgress(console, tmp_path, clock=clock, live=False)
    progress.started("r7", "r7 candidate 1a2b3c4d")
    log = tmp_path / "r7.log"
    log.write_text("step 00005 | tokens 10240 | loss 3.9000 |  20% of budget\n")
    clock.now += 5
    assert progress.poll() == []  # 5 s of silence: nothing yet
    clock.now += 24.9
    assert progress.poll() == []
    with log.open("a") as f:
        f.write("step 00015 | tokens 30720 | loss 3.2000 |  60% of budget\n")
    clock.now += 0.1  # 30 s since the last output
    lines = progress.poll()
    assert len(lines) == 1
    line = lines[0]
    assert "r7 candidate" in line and "step 15" in line and "30,720 tokens" in line and "loss 3.200" in line
    assert "60%" in line and "ETA" in line
    assert "step 15" in buffer.getvalue()
    clock.now += 29
    assert progress.poll() == []  # at most one heartbeat per 30 s
    progress.printed()  # an event line resets the silence
    clock.now += 29
    assert progress.poll() == []
    progress.ended("r7")
    clock.now += 100
    assert progress.poll() == []  # nothing in flight, nothing to say


def test_on_a_terminal_the_live_line_shows_step_tokens_loss_and_eta(tmp_path: Path) -> None:
    from ledgerlab.cli.progress import RunProgress

    console, _ = _console()
    clock = _Clock()
    progress = RunProgress(console, tmp_path, clock=clock, live=True)
    progress.started("r2", "r2 baseline")
    assert progress.poll() == ["run r2 baseline · 0 s"]  # no log yet
    (tmp_path / "r2.log").write_text("step 00002 | tokens 4096 | loss 5.0000 |  10% of budget\n")
    clock.now += 2
    progress.poll()
    (tmp_path / "r2.log").write_text("step 00010 | tokens 20480 | loss 3.5000 |  50% of budget\n")
    clock.now += 8  # 40% of the budget in 8 s: 50% more takes 10 s
    assert progress.poll() == ["run r2 baseline · step 10 · 20,480 tokens · loss 3.500 · 50% · 10 s · ETA 10 s"]


def _stored(event: object, at: str = "2026-01-01T10:00:00+00:00") -> object:
    from datetime import datetime

    from ledgerlab.storage import events as ev

    class Row:
        recorded_at = datetime.fromisoformat(at)

        def event(self) -> ev.Event:
            return event  # type: ignore[return-value]

    return Row()


def test_a_proposal_prints_when_its_first_run_starts_after_the_baseline(monkeypatch: object) -> None:
    from ledgerlab.cli import session
    from ledgerlab.storage import events as ev

    console, buffer = _console()
    monkeypatch.setattr(session, "console", console)  # type: ignore[attr-defined]
    printer = session._Printer(quiet=False, runs_dir=None)
    started = ev.CampaignStarted(domain="ml_training", metric={"name": "val_bpb"}, baseline_files={},
                                 baseline_candidate_id="base0000")
    events = [started,
              ev.HypothesisProposed(hypothesis_id="h1", proposer="knob", rationale="LR: 0.001 → 0.002",
                                    parent_candidate_id="base0000", diff=""),
              ev.CandidateCreated(candidate_id="cand0000", hypothesis_id="h1", parent_candidate_id="base0000"),
              ev.RunStarted(run_id="r1", candidate_id="base0000", role="incumbent", seed=0),
              ev.RunFinished(run_id="r1", value=4.0123, duration_s=17.0),
              ev.RunStarted(run_id="r2", candidate_id="cand0000", hypothesis_id="h1", seed=0),
              ev.RunFinished(run_id="r2", value=3.9, duration_s=17.0)]
    for e in events:
        printer(_stored(e))
    printer.close()
    lines = buffer.getvalue().splitlines()
    order = [next(i for i, line in enumerate(lines) if text in line)
             for text in ("baseline base0000", "run r1 baseline", "val_bpb 4.0123", "#1", "run r2 candidate")]
    assert order == sorted(order), lines
    assert "run r2 finished: val_bpb 3.9 in 17.0 s" in buffer.getvalue()


def test_an_import_queued_again_after_a_stale_test_says_so(monkeypatch: object) -> None:
    from ledgerlab.cli import session
    from ledgerlab.storage import events as ev

    console, buffer = _console()
    monkeypatch.setattr(session, "console", console)  # type: ignore[attr-defined]
    printer = session._Printer(quiet=False, runs_dir=None)
    item = ev.DiscoveryImported(hypothesis_id="h1", source_campaign_id="c-source", source_hypothesis_id="h-s",
                                source_number=4, domain="toy", rationale="X: 2 → 5", diff="")
    events = [ev.CampaignStarted(domain="toy", metric={"name": "loss"}, baseline_files={},
                                 baseline_candidate_id="base0000"),
              item,
              ev.HypothesisProposed(hypothesis_id="h1", proposer="imported", rationale="X: 2 → 5",
                                    parent_candidate_id="base0000", diff=""),
              ev.VerdictReached(hypothesis_id="h1", decision="reject", test="stale", reason="stale: the incumbent moved"),
              item.model_copy(update={"hypothesis_id": "h2", "retry_of": "h1"})]
    for e in events:
        printer(_stored(e))
    printer.close()
    out = buffer.getvalue()
    assert "imported #4 of c-source: X: 2 → 5 (queued: this campaign's judge tests it)" in out
    assert "imported #4 of c-source queued again: the incumbent changed while #1 tested it" in out
