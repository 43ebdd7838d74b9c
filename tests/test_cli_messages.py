"""The CLI's small promises (issue 19): errors that name what the user typed and the fix, help that reads in
order, hypothesis numbers that survive a resume, an empty folder left empty. Real ledgers, real commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_cli_campaign import H1, H3, build_project, invoke, one_line_error

from ledgerlab.core.knobs import read_knob, write_knob
from ledgerlab.core.project import Project
from ledgerlab.core.protocols import Knob
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return build_project(tmp_path / "proj")


# ------------------------------------------------------------------------------------------- errors


def test_log_with_an_unknown_event_type_lists_the_valid_ones(project: Path) -> None:
    one_line_error(invoke("log", "-t", "NoSuchEvent", "--dir", str(project)), "no event type 'NoSuchEvent'",
                   "RunFinished", "VerdictReached")
    lines = invoke("log", "-t", "runfinished", "--dir", str(project)).output.splitlines()
    assert lines and all("RunFinished" in line for line in lines)  # the case of a known type does not matter


def test_sql_on_an_unknown_table_points_to_schema(project: Path) -> None:
    one_line_error(invoke("sql", "select * from nosuch", "--dir", str(project)), "nosuch", "`ledgerlab schema`")
    one_line_error(invoke("sql", "select nocol from runs", "--dir", str(project)), "nocol", "`ledgerlab schema`")


def test_option_errors_name_the_option_typed(tmp_path: Path) -> None:
    result = invoke("run", "marketing", "--workers", "0", "--dir", str(tmp_path))
    one_line_error(result, "--workers", "greater than or equal to 1")
    assert "executor.workers" not in result.output
    one_line_error(invoke("run", "marketing", "--judge", "oracle", "--dir", str(tmp_path)), "--judge", "'stats'")
    one_line_error(invoke("run", "marketing", "--time-limit", "soon", "--dir", str(tmp_path)),
                   "--time-limit: cannot read the duration 'soon'")
    one_line_error(invoke("resume", "--max-runs", "-1", "--dir", str(tmp_path)), "--max-runs")


def test_no_domain_names_the_toml_key_init_writes(tmp_path: Path) -> None:
    one_line_error(invoke("run", "--dir", str(tmp_path)), "`ledgerlab run DOMAIN`", "`name` under `[domain]`")


def test_a_failed_run_in_an_empty_folder_leaves_it_empty(tmp_path: Path) -> None:
    for args in (["run", "--workers", "0", "marketing"], ["run"], ["run", "nosuch"], ["resume"]):
        assert invoke(*args, "--dir", str(tmp_path)).exit_code == 2
        assert list(tmp_path.iterdir()) == [], args


def test_a_failed_run_keeps_a_ledger_that_has_events(project: Path) -> None:
    assert invoke("run", "nosuch", "--new", "--dir", str(project)).exit_code == 2
    assert Project.at(project).ledger_path.exists()


# ---------------------------------------------------------------------------------------------- help


def test_top_level_help_lists_commands_in_order_and_whole() -> None:
    out = invoke("--help").output
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    first = ["init", "run", "resume", "status", "hypotheses", "show", "log", "sql", "schema", "export"]
    assert listed[: len(first)] == first and {"verify", "sign", "domains", "plot", "checkout"} <= set(listed)
    from ledgerlab.cli.main import ORDER

    assert listed == list(ORDER), "a new command gets its place in cli/main.py's ORDER, not the end by accident"
    flat = " ".join(out.split())
    assert "..." not in out.split("Commands:")[1] and "after Ctrl-C or a crash (unfinished runs are re-run)" in flat


def test_run_help_and_the_meaning_of_o() -> None:
    out = invoke("run", "--help").output
    assert "--option KEY=VALUE" in out and "list[str]" not in out and "-o," not in out
    assert invoke("run", "-o", "visitors_per_run=100").exit_code == 2  # -o is --out everywhere else
    assert "-o, --out" in invoke("export", "--help").output and "-o, --out" in invoke("checkout", "--help").output


# ---------------------------------------------------------------------------------------------- show


def test_show_mentions_confirmation_runs_only_where_there_are_some(project: Path) -> None:
    rejected = invoke("show", H3, "--dir", str(project)).output
    assert "runs (2)" in rejected and "confirmation runs" not in rejected
    accepted = invoke("show", H1, "--dir", str(project)).output
    assert "role incumbent: confirmation runs after the accept" in accepted


# -------------------------------------------------------------------------------------------- resume


def test_verdicts_after_resume_keep_their_hypothesis_number(tmp_path: Path) -> None:
    """A campaign paused between a proposal and its verdict: the verdict printed on resume says #1, not #?."""
    first = tmp_path / "first"
    assert invoke("run", "marketing", "--max-hypotheses", "2", "--dir", str(first)).exit_code == 0
    with DuckDBLedger(Project.at(first).ledger_path) as store:
        campaign_id = store.campaign_ids()[0]
        rows = store.read(campaign_id)
    cut = next(i for i, row in enumerate(rows) if row.type == "VerdictReached")
    assert any(row.type == "HypothesisProposed" for row in rows[:cut])
    paused = tmp_path / "paused"
    with DuckDBLedger(Project.at(paused).ledger_path) as store:
        store.append(campaign_id, [row.event() for row in rows[:cut]] + [ev.CampaignPaused(reason="interrupted")],
                     expected_version=0)
    result = invoke("resume", "--dir", str(paused))
    assert result.exit_code == 0, result.output
    assert "#?" not in result.output and re.search(r"#1 (accept|reject)", result.output), result.output


# --------------------------------------------------------------------------------------------- knobs


@pytest.mark.parametrize(("file", "line", "expected"), [
    ("train.py", 'ACT = "gelu"  # activation\n', 'ACT = "relu"  # activation\n'),
    ("train.py", "ACT = 'gelu'\n", "ACT = 'relu'\n"),
    ("conf.toml", 'ACT = "gelu"\n', 'ACT = "relu"\n'),
    ("conf.toml", "ACT = 'gelu'\n", "ACT = 'relu'\n"),
])
def test_a_knob_rewrite_keeps_the_quote_style(file: str, line: str, expected: str) -> None:
    knob = Knob(name="ACT", file=file, kind="choice", choices=("gelu", "relu"))
    files = write_knob({file: line}, knob, "relu")
    assert files[file] == expected and read_knob(files, knob) == "relu"


def test_a_knob_string_that_cannot_keep_its_quotes_is_still_valid() -> None:
    knob = Knob(name="MSG", file="train.py", kind="choice", choices=())
    files = write_knob({"train.py": "MSG = 'a'\n"}, knob, "it's")
    assert read_knob(files, knob) == "it's"
    toml = Knob(name="msg", file="c.toml", kind="choice", choices=())
    assert read_knob(write_knob({"c.toml": "msg = 'a'\n"}, toml, "it's"), toml) == "it's"
    assert read_knob({"c.toml": "msg = 'snake_case'\n"}, toml) == "snake_case"  # a literal string, verbatim


def test_init_says_the_next_command_for_its_folder(tmp_path: Path) -> None:
    out = invoke("init", "marketing", "--dir", str(tmp_path / "p")).output
    assert f"`ledgerlab run --dir {tmp_path / 'p'}`" in out
