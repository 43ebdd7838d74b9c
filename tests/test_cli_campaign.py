"""`ledgerlab domains`, `init`, `status`, `show`, `checkout` through typer's CliRunner, on real DuckDB ledgers.

`build_project` writes a campaign whose candidate ids and diffs are real (core/patches), so `checkout` can
rebuild and verify every candidate; tests/test_cli_export.py reuses it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fixtures_events import MIN, append_stream, fixture_stream
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.config import CampaignConfig, load_config
from ledgerlab.core.patches import candidate_id, make_diff
from ledgerlab.core.project import Project
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner(env={"COLUMNS": "160"})
CAMPAIGN = "c0ffee-campaign"


def invoke(*args: str, **kwargs: Any):  # noqa: ANN201 - typer's Result
    return runner.invoke(app, list(args), **kwargs)


def one_line_error(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("error: ") and all(w in result.output for w in words), result.output


# -------------------------------------------------------------------------------- a realistic campaign

BASE = {"train.py": "LR = 0.1\nDEPTH = 4\nWIDTH = 64\n\nprint('train')\n", "conf/opt.toml": "beta = 0.9\n"}


def _edit(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    out = dict(files)
    out[name] = out[name].replace(old, new)
    return out


class Stream:
    """Builds one campaign's events with consistent ids, diffs, seeds and run ids."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.runs = 0

    def add(self, *events: ev.Event) -> None:
        self.events.extend(events)

    def run(self, cand: str, seed: int, value: float | None, hyp: str | None = None, role: str = "candidate",
            status: str = "finished") -> str:
        self.runs += 1
        run_id = f"run-{self.runs:03d}-{cand[:6]}"
        self.add(ev.RunStarted(run_id=run_id, candidate_id=cand, hypothesis_id=hyp, role=role, seed=seed))
        if status == "finished":
            self.add(ev.RunFinished(run_id=run_id, value=value, metrics={"val_bpb": value}, duration_s=2.0))
        elif status != "running":
            self.add(ev.RunFailed(run_id=run_id, status=status, error="CUDA out of memory", duration_s=1.0))
        return run_id

    def hypothesis(self, hid: str, parent: dict[str, str], child: dict[str, str] | None, rationale: str,
                   diff: str | None = None) -> str:
        self.add(ev.HypothesisProposed(hypothesis_id=hid, proposer="knob", rationale=rationale,
                                       parent_candidate_id=candidate_id(parent),
                                       diff=diff if diff is not None else make_diff(parent, child or parent),
                                       changes={"LR": 0.2}))
        return hid


def verdict(hid: str, decision: str, effect: float, reason: str = "") -> ev.VerdictReached:
    return ev.VerdictReached(hypothesis_id=hid, decision=decision, reason=reason, test="paired-t", statistic=3.1,
                             p_value=0.004 if decision == "accept" else 0.6, effect=effect, ci_low=effect - 0.02,
                             ci_high=effect + 0.02, n_candidate=2, n_incumbent=2, alpha_spent=0.01, looks=2)


C1 = _edit(BASE, "train.py", "LR = 0.1", "LR = 0.2")
C3 = _edit(C1, "train.py", "DEPTH = 4", "DEPTH = 8")
C4 = _edit(C1, "conf/opt.toml", "beta = 0.9", "beta = 0.95")
C5 = _edit(C4, "train.py", "WIDTH = 64", "WIDTH = 128")
IDS = {name: candidate_id(files) for name, files in
       {"base": BASE, "c1": C1, "c3": C3, "c4": C4, "c5": C5}.items()}
H1, H2, H3, H4, H5 = "a1b2c3d4-h1", "a1b2c3d4-h2", "b9e8-h3", "c7d6-h4", "d5e4-h5"


def campaign_events() -> list[ev.Event]:
    """base → #1 accepted (C1) → #2 patch rejected → #3 rejected (C3) → #4 accepted (C4) → #5 testing."""
    s = Stream()
    base, c1, c3, c4, c5 = (IDS[k] for k in ("base", "c1", "c3", "c4", "c5"))
    s.add(ev.CampaignStarted(domain="ml_training", metric={"name": "val_bpb", "direction": "minimize",
                                                           "delta": 0.01, "unit": "bits/byte"},
                             baseline_files=BASE, baseline_candidate_id=base, seed=7,
                             judge={"guardrails": False, "holdback_max_runs": 0, "holdback_max_pairs": 0}))
    for seed, value in ((0, 1.00), (1, 1.02), (2, 1.01)):
        s.run(base, seed, value, role="incumbent")
    s.hypothesis(H1, BASE, C1, "double the learning rate")
    s.add(ev.LLMCallCompleted(call_id="call-1", model="gpt-x", prompt_tokens=900, completion_tokens=80,
                              cost_usd=0.0125, latency_s=2.0, ok=True),
          ev.LLMCallCompleted(call_id="call-2", model="local", latency_s=1.0, ok=True))
    s.add(ev.CandidateCreated(candidate_id=c1, hypothesis_id=H1, parent_candidate_id=base))
    s.run(c1, 0, 0.95, H1)
    s.run(c1, 1, 0.96, H1)
    s.add(verdict(H1, "accept", 0.055),
          ev.IncumbentChanged(candidate_id=c1, hypothesis_id=H1, previous_candidate_id=base, seed_base=3))
    for seed, new, old in ((3, 0.94, 1.00), (4, 0.96, 1.03)):  # confirmation: both on fresh seeds
        s.run(c1, seed, new, H1, role="incumbent")
        s.run(base, seed, old, H1, role="incumbent")
    s.hypothesis(H2, C1, None, "rewrite the optimizer", diff="--- a/train.py\n+++ b/train.py\n@@ broken\n")
    s.add(ev.PatchRejected(hypothesis_id=H2, reason="patch does not apply"))
    s.hypothesis(H3, C1, C3, "a deeper model")
    s.add(ev.CandidateCreated(candidate_id=c3, hypothesis_id=H3, parent_candidate_id=c1))
    s.run(c3, 3, None, H3, status="crashed")
    s.run(c3, 3, 0.99, H3)
    s.add(verdict(H3, "reject", -0.04, "futility"))
    s.hypothesis(H4, C1, C4, "more momentum")
    s.add(ev.CandidateCreated(candidate_id=c4, hypothesis_id=H4, parent_candidate_id=c1))
    s.run(c4, 3, 0.90, H4)
    s.run(c4, 4, 0.91, H4)
    s.add(verdict(H4, "accept", 0.045),
          ev.IncumbentChanged(candidate_id=c4, hypothesis_id=H4, previous_candidate_id=c1, seed_base=5))
    for seed, new, old in ((5, 0.92, 0.951), (6, 0.93, 0.97)):
        s.run(c4, seed, new, H4, role="incumbent")
        s.run(c1, seed, old, H4, role="incumbent")
    s.hypothesis(H5, C4, C5, "a wider model")
    s.add(ev.CandidateCreated(candidate_id=c5, hypothesis_id=H5, parent_candidate_id=c4))
    s.run(c5, 5, None, H5, status="running")
    return s.events


def build_project(root: Path, events: list[ev.Event] | None = None, campaign: str = CAMPAIGN) -> Path:
    with DuckDBLedger(Project.at(root).ledger_path) as ledger:
        ledger.append(campaign, events or campaign_events(), expected_version=ledger.version(campaign))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return build_project(tmp_path / "proj")


# -------------------------------------------------------------------------------------------- domains


def test_domains_lists_builtins_with_metric() -> None:
    result = invoke("domains")
    assert result.exit_code == 0, result.output
    for word in ("ml_training", "val_bpb", "minimize", "marketing", "conversion_rate", "maximize"):
        assert word in result.output
    assert "make a small byte-level GPT" in result.output.replace("\n", " ") or "byte-level" in result.output
    # The other plug-in kinds, by the names `[proposer|judge|executor] kind` take.
    for line in ("proposers: knob, llm, random", "judges: fixed, greedy, stats", "executors: local, ray"):
        assert line in result.output, result.output


def test_domains_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from ledgerlab.cli.main import app; "
            "r = CliRunner().invoke(app, ['domains']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'litellm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------------------------- init


def test_init_writes_loadable_config_and_artifact(tmp_path: Path) -> None:
    from ledgerlab.core.registry import load_domain

    result = invoke("init", "ml_training", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    domain = load_domain("ml_training")
    for name, text in domain.baseline().items():
        assert (tmp_path / name).read_text() == text
    assert (tmp_path / "program.md").read_text() == domain.description
    config = load_config(tmp_path / "ledgerlab.toml")
    assert config == CampaignConfig(domain="ml_training")


def test_init_toml_covers_every_option_and_its_defaults_load(tmp_path: Path) -> None:
    from ledgerlab.cli.init import SECTIONS, help_table

    HELP = help_table()
    from ledgerlab.core.registry import load_domain

    defaults = CampaignConfig()
    for section in SECTIONS:
        for name in type(getattr(defaults, section)).model_fields:
            assert f"{section}.{name}" in HELP, f"init does not document {section}.{name}"
    assert set(CampaignConfig.model_fields) <= {*SECTIONS, "domain", "seed", "domain_options", "agents"}

    assert invoke("init", "ml_training", "--dir", str(tmp_path)).exit_code == 0
    text = (tmp_path / "ledgerlab.toml").read_text()
    # Remove the '# ' of every `# key = value` line, the example [[agents]] blocks included: still valid.
    uncommented = re.sub(r"(?m)^# (\[\[agents\]\]|\w+ = .*?)(  \(example.*)?$", r"\1", text)
    data = tomllib.loads(uncommented)
    assert data["domain"]["device"] == "auto" and data["budgets"]["time_limit"] == "2h"
    assert len(data["agents"]) == 2
    (tmp_path / "ledgerlab.toml").write_text(uncommented)
    full = load_config(tmp_path / "ledgerlab.toml")
    for section in SECTIONS:  # every commented default is the real default
        got, want = getattr(full, section), getattr(defaults, section)
        for name, value in want:
            if value is not None:
                assert getattr(got, name) == value, f"{section}.{name}"
    assert full.budgets.time_limit == 7200 and full.agents[0].name == "explorer"
    load_domain("ml_training", full.domain_options)  # the domain accepts its listed defaults


def test_init_marketing_lists_its_settings(tmp_path: Path) -> None:
    assert invoke("init", "marketing", "--dir", str(tmp_path)).exit_code == 0
    text = (tmp_path / "ledgerlab.toml").read_text()
    assert "# visitors_per_run = 25000" in text and "market_url (unset by default)" in text
    assert (tmp_path / "variant.toml").exists()
    assert load_config(tmp_path / "ledgerlab.toml").domain == "marketing"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "ledgerlab.toml").write_text("this is [not toml\n")
    with pytest.raises(Exception, match="not valid TOML"):
        load_config(tmp_path / "ledgerlab.toml")
    refused = invoke("init", "ml_training", "--dir", str(tmp_path))
    one_line_error(refused, "ledgerlab.toml", "--force")
    assert not (tmp_path / "train.py").exists()
    assert (tmp_path / "ledgerlab.toml").read_text() == "this is [not toml\n"
    forced = invoke("init", "ml_training", "--force", "--dir", str(tmp_path))
    assert forced.exit_code == 0 and load_config(tmp_path / "ledgerlab.toml").domain == "ml_training"


def test_init_unknown_domain(tmp_path: Path) -> None:
    one_line_error(invoke("init", "nope", "--dir", str(tmp_path)), "unknown domain 'nope'", "ml_training",
                   "marketing")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------- status


def test_status_at_a_glance(project: Path) -> None:
    from ledgerlab.core.runner_lock import hold

    with hold(Project.at(project)):  # "running" means a live runner holds the folder (here: this process)
        result = invoke("status", "--dir", str(project))
    out = result.output
    assert result.exit_code == 0, out
    assert CAMPAIGN in out and "ml_training" in out and "val_bpb" in out and "running" in out
    assert IDS["c4"][:12] in out and "from #4" in out
    assert "0.925  (mean of 2 runs after selection)" in out  # the incumbent's confirmation runs
    assert "1.012  (mean of 5 runs)" in out  # the baseline's calibration and confirmation runs
    assert "0.087" in out and "Welch t, n=2 vs n=5, 95%" in out
    assert "#1 double the learning rate: selected at 0.055 [0.035, 0.075]" in out
    assert "confirmed 0.065" in out and "confirmed 0.035" in out and "paired t on 2 fresh seeds" in out
    assert "5 tried: 2 accepted, 1 rejected, 1 patch-rejected, 1 open" in out
    assert "16 finished, 1 failed (1 crashed), 1 unfinished" in out
    assert "$0.0125 over 2 LLM calls (1 with unknown price" in out
    assert "1 running:" in out and "#5" in out
    # The same ledger with no runner holding the folder: the runner died (kill -9, a crash, a reboot).
    out = invoke("status", "--dir", str(project)).output
    assert "stopped unexpectedly at" in out and "`ledgerlab resume`" in out and "1 running:" not in out
    assert "1 interrupted, re-run on resume:" in out and "#5" in out


def test_status_says_when_an_accept_will_never_be_confirmed(tmp_path: Path) -> None:
    from ledgerlab.core.runner_lock import hold

    events = campaign_events()
    cut = 1 + next(i for i, e in enumerate(events) if isinstance(e, ev.IncumbentChanged) and e.hypothesis_id == H4)
    running = build_project(tmp_path / "running", events[:cut])  # #4 accepted, its fresh runs not started
    with hold(Project.at(running)):
        out = " ".join(invoke("status", "--dir", str(running)).output.replace("│", " ").split())
    assert "#4 more momentum: selected at 0.045" in out and "not confirmed: its fresh runs are to come" in out
    assert "not measured yet (needs baseline runs and incumbent runs after selection)" in out
    # A budget ran out right after the accept: the campaign finished, and nothing will run those fresh runs.
    ended = build_project(tmp_path / "ended", [*events[:cut], ev.CampaignFinished(reason="time_limit")])
    out = invoke("status", "--dir", str(ended)).output
    assert "finished (time_limit)" in out and "yet" not in out
    flat = " ".join(out.replace("│", " ").split())
    assert "not confirmed: the campaign finished before its fresh runs" in flat
    assert "not measured (the campaign finished before the incumbent ran again after its selection)" in flat
    shown = " ".join(invoke("show", "4", "--dir", str(ended)).output.replace("│", " ").split())
    assert "confirmed not confirmed: the campaign finished before its fresh runs" in shown
    # #1's fresh runs never ran before #4 replaced it: only the incumbent gets them, so they never will.
    dropped = {e.run_id for e in events if isinstance(e, ev.RunStarted) and e.hypothesis_id == H1
               and e.role == "incumbent"}
    replaced = build_project(tmp_path / "replaced", [e for e in events[:cut] if getattr(e, "run_id", None) not in dropped])
    with hold(Project.at(replaced)):
        out = " ".join(invoke("status", "--dir", str(replaced)).output.replace("│", " ").split())
    assert "#1 double the learning rate: selected at 0.055 [0.035, 0.075] (paired-t, p=0.004); not confirmed: a " \
           "later accept replaced it before its fresh runs finished" in out


def test_status_intervals(project: Path) -> None:
    from scipy import stats

    from ledgerlab.cli.campaign import load_state
    from ledgerlab.core.effects import compare, confirmed, fresh_runs

    state = load_state(str(project), None)
    base = [r for r in state.finished_runs(IDS["base"])]
    got = compare(state, fresh_runs(state, IDS["c4"]), base)
    ci = stats.ttest_ind([1.00, 1.02, 1.01, 1.00, 1.03], [0.92, 0.93], equal_var=False).confidence_interval(0.95)
    assert got.effect == pytest.approx(1.012 - 0.925) and got.method.startswith("Welch")
    assert (got.low, got.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    first = confirmed(state, state.hypotheses[H1])  # paired on the fresh seeds 3 and 4
    paired = stats.ttest_rel([1.00, 1.03], [0.94, 0.96]).confidence_interval(0.95)
    assert first.effect == pytest.approx(0.065) and first.method == "paired t on 2 fresh seeds"
    assert (first.low, first.high) == (pytest.approx(paired.low), pytest.approx(paired.high))
    matched = compare(state, fresh_runs(state, IDS["c1"]), base)  # c1 and the baseline share seeds 3, 4
    assert matched.method == "paired t on 2 matched seeds" and matched.effect == pytest.approx(0.065)
    assert confirmed(state, state.hypotheses[H5]) is None


def test_status_fixture_campaigns_and_choice(tmp_path: Path) -> None:
    with DuckDBLedger(Project.at(tmp_path).ledger_path) as ledger:
        append_stream(ledger, fixture_stream())
    latest = invoke("status", "--dir", str(tmp_path))
    assert latest.exit_code == 0 and "camp-max" in latest.output and "finished (max_hypotheses)" in latest.output
    chosen = invoke("status", "--campaign", "camp-mi", "--dir", str(tmp_path))
    assert chosen.exit_code == 0 and MIN in chosen.output and "r-4a" in chosen.output
    one_line_error(invoke("status", "--campaign", "camp", "--dir", str(tmp_path)), "ambiguous")
    one_line_error(invoke("status", "--campaign", "zzz", "--dir", str(tmp_path)), "no campaign 'zzz'", "camp-min")


def test_status_paused_shows_interrupted_runs(tmp_path: Path) -> None:
    events = [*campaign_events(), ev.CampaignPaused(reason="signal")]
    build_project(tmp_path, events)
    out = invoke("status", "--dir", str(tmp_path)).output
    assert "paused" in out and "interrupted, re-run on resume" in out


def test_status_no_ledger_and_no_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one_line_error(invoke("status", "--dir", str(tmp_path / "none")), "no ledger", "ledgerlab run")
    DuckDBLedger(Project.at(tmp_path).ledger_path).close()
    monkeypatch.setenv("LEDGERLAB_DIR", str(tmp_path))
    one_line_error(invoke("status"), "no campaign", "ledgerlab run")


def test_status_while_a_writer_holds_the_ledger(tmp_path: Path) -> None:
    ledger = DuckDBLedger(Project.at(tmp_path).ledger_path, idle_s=30.0)
    try:
        ledger.append(CAMPAIGN, campaign_events(), expected_version=0)  # the lease stays open for 30 s
        result = invoke("status", "--dir", str(tmp_path))
        assert result.exit_code == 0 and "5 tried" in result.output
        finish = ev.CampaignFinished(reason="max_hypotheses")
        ledger.append(CAMPAIGN, [finish], expected_version=ledger.version(CAMPAIGN))
        assert "finished (max_hypotheses)" in invoke("status", "--dir", str(tmp_path)).output
    finally:
        ledger.close()


# ----------------------------------------------------------------------------------------------- show


@pytest.mark.parametrize("ref", ["4", "#4", "c7d6", "c7d6-h4"])
def test_show_hypothesis(project: Path, ref: str) -> None:
    result = invoke("show", ref, "--dir", str(project))
    out = result.output
    assert result.exit_code == 0, out
    assert "hypothesis #4" in out and "more momentum" in out and "knob" in out and "accepted" in out
    assert "-beta = 0.9" in out and "+beta = 0.95" in out  # the diff
    assert "0.9" in out and "0.91" in out and "paired-t" in out and "0.004" in out and "0.045" in out
    assert "[0.025, 0.065]" in out and "candidate n=2, incumbent n=2" in out and "0.01" in out
    assert "0.951" in out and "│ parent " in out and "confirmed" in out and "0.035" in out
    assert "from #1" in out and "the incumbent now" in out


def test_show_patch_rejected_and_running(project: Path) -> None:
    rejected = invoke("show", "2", "--dir", str(project)).output
    assert "patch_rejected (patch does not apply)" in rejected and "the patch was rejected" in rejected
    crashed = invoke("show", "#3", "--dir", str(project)).output
    assert "crashed" in crashed and "CUDA out of memory" in crashed and "futility" in crashed
    testing = invoke("show", "d5", "--dir", str(project)).output
    assert "running" in testing and "pending" in testing


def test_show_unknown_and_ambiguous(project: Path) -> None:
    one_line_error(invoke("show", "#9", "--dir", str(project)), "no hypothesis #9")
    one_line_error(invoke("show", "zz", "--dir", str(project)), "no hypothesis 'zz'")
    one_line_error(invoke("show", "a1b2", "--dir", str(project)), "matches 2 hypotheses")
    one_line_error(invoke("show", "1", "--dir", str(project / "missing")), "no ledger")


# ------------------------------------------------------------------------------------------- checkout


def read_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("ref,files", [("best", C4), ("baseline", BASE), ("#3", C3), ("5", C5),
                                       (IDS["c1"][:10], C1)])
def test_checkout_rebuilds_from_the_ledger(project: Path, tmp_path: Path, ref: str, files: dict[str, str]) -> None:
    out = tmp_path / "out"
    result = invoke("checkout", ref, "--out", str(out), "--dir", str(project))
    assert result.exit_code == 0, result.output
    assert read_tree(out) == files and "id verified" in result.output


def test_checkout_default_folder_and_overwrite(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = invoke("checkout", "best", "--dir", str(project))
    target = tmp_path / f"checkout-{IDS['c4'][:12]}"
    assert first.exit_code == 0 and read_tree(target) == C4
    one_line_error(invoke("checkout", "best", "--dir", str(project)), "not empty", "--force")
    (target / "train.py").write_text("edited")
    assert invoke("checkout", "best", "--force", "--dir", str(project)).exit_code == 0
    assert read_tree(target) == C4


def test_checkout_bad_refs(project: Path, tmp_path: Path) -> None:
    one_line_error(invoke("checkout", "nope", "--out", str(tmp_path / "x"), "--dir", str(project)),
                   "no candidate or hypothesis 'nope'")
    one_line_error(invoke("checkout", "#2", "--out", str(tmp_path / "x"), "--dir", str(project)),
                   "has no candidate")
    assert not (tmp_path / "x").exists()


def test_checkout_detects_a_ledger_that_does_not_rebuild(tmp_path: Path) -> None:
    events = campaign_events()
    lied = [e.model_copy(update={"diff": make_diff(C1, C3)}) if isinstance(e, ev.HypothesisProposed)
            and e.hypothesis_id == H4 else e for e in events]  # #4's diff no longer yields C4
    build_project(tmp_path / "p", lied)
    one_line_error(invoke("checkout", "best", "--out", str(tmp_path / "o"), "--dir", str(tmp_path / "p")),
                   "different files")
    with DuckDBLedger(Project.at(tmp_path / "q").ledger_path) as ledger:
        append_stream(ledger, fixture_stream())  # fake ids: the baseline files do not match their id
    one_line_error(invoke("checkout", "baseline", "--out", str(tmp_path / "o"), "--dir", str(tmp_path / "q")),
                   "baseline files")


def test_checkout_refuses_file_names_that_escape(tmp_path: Path) -> None:
    evil = {"../escaped.txt": "x"}
    start = ev.CampaignStarted(domain="d", metric={"name": "m", "direction": "minimize"}, baseline_files=evil,
                               baseline_candidate_id=candidate_id(evil))
    build_project(tmp_path / "p", [start])
    one_line_error(invoke("checkout", "baseline", "--out", str(tmp_path / "o"), "--dir", str(tmp_path / "p")),
                   "outside the checkout folder")
    assert not (tmp_path / "escaped.txt").exists()


# ------------------------------------------------------------------ end to end, on the real campaign loop


def test_commands_on_a_campaign_the_loop_wrote(tmp_path: Path) -> None:
    """The fields these commands rely on are the ones core/campaign.py records."""
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.executors.local import LocalExecutor
    from ledgerlab.core.knobs import write_knob
    from ledgerlab.testing import KNOBS, ScriptedProposer, ToyDomain

    steps = [{"X": 5.0}, {"MODE": "broken"}, {"MODE": "fancy"}, {"Y": 5}]

    domain = ToyDomain()
    with DuckDBLedger(Project.at(tmp_path).ledger_path) as store:
        state = Campaign(store, domain, CampaignConfig(domain="toy"), agents=[Agent("agent-0", ScriptedProposer(steps))],
                         executor=LocalExecutor(domain, workers=1), runs_dir=tmp_path / "runs").run()
    accepted = [h for h in state.hypotheses.values() if h.status == "accepted"]
    assert accepted and state.incumbent_id == accepted[-1].candidate_id

    status_out = invoke("status", "--dir", str(tmp_path)).output
    assert "finished (proposer_exhausted)" in status_out and state.incumbent_id[:12] in status_out
    assert "4 tried" in status_out and "confirmed" in status_out and "relative by the delta method, 95%" in status_out
    shown = invoke("show", "#1", "--dir", str(tmp_path)).output
    assert "-X = 2.0" in shown and "+X = 5" in shown and "accept" in shown and "paired t on 2 fresh" in shown
    out = tmp_path / "best"
    assert invoke("checkout", "best", "--out", str(out), "--dir", str(tmp_path)).exit_code == 0
    expected = {"params.py": write_knob(domain.baseline(), KNOBS[0], 5.0)["params.py"]}
    if state.hypotheses[accepted[-1].hypothesis_id].changes.get("Y") == 5:
        expected = write_knob(expected, KNOBS[1], 5)
    assert read_tree(out) == expected
    table = invoke("export", "--view", "results", "--dir", str(tmp_path)).stdout.splitlines()
    assert len(table) == 5 and "\taccepted\t" in table[1]
    assert invoke("plot", "--out", str(tmp_path / "p.png"), "--dir", str(tmp_path)).exit_code == 0
