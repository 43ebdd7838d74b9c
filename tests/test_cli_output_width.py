"""Output fits any width. Off a terminal (a log file, a pipe) nothing is hard-wrapped; at 80 columns (or fewer)
tables drop or shorten columns, and never split a word, a number or an id; a command to copy stays on one line.
Real campaigns through the CLI (typer's runner is not a terminal; COLUMNS sets the width a terminal would have).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ledgerlab.cli.common import Col, clip, fit_table
from ledgerlab.cli.main import app

runner = CliRunner()
BOX = "│┃┆┏┓┗┛┣┫┳┻╋━─┡┩┢┪╇┠┨┯┷┿└┘├┤┬┴┼┌┐╭╮╰╯═║╔╗╚╝"
NOTE = "not shown at this width: (widen the terminal or set COLUMNS); or use --format csv"
LONG = "a-folder-name-long-enough-to-push-every-line-past-eighty-columns-"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real marketing campaign (A/B windows, a control arm, guardrails) in a folder with a long name."""
    folder = tmp_path_factory.mktemp("width") / (LONG * 2)
    done = runner.invoke(app, ["run", "marketing", "--dir", str(folder), "--max-hypotheses", "6"],
                         env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    (folder.parent / "run.out").write_text(done.output)
    return folder


def cli(columns: int | None, *args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns) if columns else None})
    assert result.exit_code == 0, result.output
    return result.output


def tokens(text: str) -> set[str]:
    return {word.strip(",;:()[]") for word in re.sub(f"[{BOX}]", " ", text).split()} - {""}


def assert_nothing_split(narrow: str, wide: str) -> None:
    """Every word of the narrow output is a whole word of the wide one, or a shortened one ending in …"""
    whole = tokens(wide) | tokens(NOTE)
    ages = re.compile(r"(\d+h)?(\d+m)?\d+s")  # "last event 1s ago" moves between the two calls
    broken = {t for t in tokens(narrow) - whole if not t.endswith("…") and not ages.fullmatch(t)}
    assert not broken, f"split or unknown: {sorted(broken)[:12]}\n{narrow}"


# ------------------------------------------------------------------------------------- off a terminal


def test_run_lines_and_the_closing_hint_are_never_wrapped(campaign: Path) -> None:
    lines = (campaign.parent / "run.out").read_text().splitlines()  # run at COLUMNS=80
    assert any(f"`ledgerlab status --dir {campaign}`" in line for line in lines)  # the command on one line
    assert max(map(len, lines)) > 80 and not any(line.startswith(LONG[:20]) for line in lines)


def test_sql_off_a_terminal_keeps_every_value_whole(campaign: Path) -> None:
    shown = cli(None, "sql", "select run_id, value, seed, hypothesis_id from runs order by run_id", "--dir",
                str(campaign))
    exact = json.loads(cli(None, "sql", "select run_id, value from runs order by run_id", "--dir", str(campaign),
                           "--format", "json"))
    lines = shown.splitlines()
    for row in exact:
        line = next(line for line in lines if row["run_id"] in line)
        assert f"{row['value']:.6g}" in line.split()


def test_show_off_a_terminal_takes_its_natural_width(campaign: Path) -> None:
    out = cli(None, "show", "1", "--dir", str(campaign))
    status_line = next(line for line in out.splitlines() if " status " in line)
    assert status_line.rstrip(" │").endswith(")") and max(map(len, out.splitlines())) > 80


# ---------------------------------------------------------------------------------------- at 80 columns


@pytest.mark.parametrize("columns", [80, 50])
@pytest.mark.parametrize("command", [["status"], ["show", "1"], ["show", "6"], ["hypotheses"],
                                     ["sql", "select * from runs"], ["sql", "select * from hypotheses"]])
def test_tables_fit_without_splitting_words_numbers_or_ids(campaign: Path, command: list[str],
                                                           columns: int) -> None:
    wide = cli(None, *command, "--dir", str(campaign))
    narrow = cli(columns, *command, "--dir", str(campaign))
    table_lines = [line for line in narrow.splitlines() if line[:1] in BOX]
    assert table_lines and max(len(line) for line in table_lines) <= columns, narrow
    assert_nothing_split(narrow, wide)


def test_at_80_columns_show_keeps_the_runs_essentials_and_says_what_it_dropped(campaign: Path) -> None:
    out = cli(80, "show", "6", "--dir", str(campaign))
    runs = json.loads(cli(None, "sql", "select r.run_id, r.value from runs r join hypotheses h using "
                                       "(hypothesis_id) where h.status is not null order by r.run_id",
                          "--dir", str(campaign), "--format", "json"))
    shown = [r for r in runs if r["run_id"] in out]
    assert shown and all(f"{r['value']:.4g}" in out for r in shown if r["value"] is not None)
    assert "not shown at this width" in out or max(map(len, out.splitlines())) <= 80


def test_log_lines_are_whole_at_any_width(campaign: Path) -> None:
    wide = cli(None, "log", "-n", "30", "--dir", str(campaign))
    assert cli(80, "log", "-n", "30", "--dir", str(campaign)) == wide  # one line per event, never wrapped
    campaign_id = json.loads(cli(None, "sql", "select campaign_id from campaigns", "--dir", str(campaign),
                                 "--format", "json"))[0]["campaign_id"]
    assert all(f"  {campaign_id}  " in line for line in wide.splitlines())  # the whole id, not the date alone


def test_a_narrow_terminal_fits_tables_too(campaign: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real terminal (force_terminal) of 80 columns: the same fitting as COLUMNS=80."""
    from ledgerlab.cli import common

    console = Console(width=80, force_terminal=True, record=True)
    monkeypatch.setattr(common, "make_console", lambda **options: console)
    cli(None, "hypotheses", "--dir", str(campaign))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80 and "rejected" in text
    monkeypatch.undo()
    assert_nothing_split(text, cli(None, "hypotheses", "--dir", str(campaign)))


# ------------------------------------------------------------------------------------------ fit_table


def render(table: object, width: int) -> str:
    console = Console(width=width, force_terminal=True, record=True)
    console.print(table)
    return console.export_text()


def test_fit_table_drops_the_least_kept_columns_first_and_never_cuts_a_number() -> None:
    cols = [Col("run", "id", 5), Col("value", "num", 5), Col("note", "text", 2), Col("window", "id", 0)]
    rows = [["r-0123456789ab", "0.04759123", "a fairly long note about the run", "r-ba9876543210"]] * 3
    fitted = fit_table(cols, rows, 50)
    out = render(fitted.table, 50)
    assert fitted.dropped == ["window"] and "0.04759123" in out and max(map(len, out.splitlines())) <= 50
    assert "not shown at this width: window" in fitted.note()
    tight = fit_table(cols, rows, 28)
    out = render(tight.table, 28)
    assert tight.dropped == ["note", "window"] and "0.04759123" in out and max(map(len, out.splitlines())) <= 28
    assert re.search(r"│ r-0123456\d*… │", out)  # an id is shortened, with an ellipsis
    roomy = fit_table(cols, rows, 200)
    assert not roomy.dropped and "a fairly long note about the run" in render(roomy.table, 200)


def test_clip_cuts_at_a_word_with_an_ellipsis() -> None:
    assert clip("discount_pct: 0 → 13 (effect +0.00115) + free_shipping", 30) == "discount_pct: 0 → 13 (effect…"
    assert clip("short", 30) == "short" and clip("x" * 40, 10) == "x" * 9 + "…"


def test_domains_fit_80_columns() -> None:
    wide, narrow = cli(None, "domains"), cli(80, "domains")
    assert max(map(len, narrow.splitlines())) <= 80 and "ml_training" in narrow and "val_bpb" in narrow
    assert_nothing_split(narrow, wide)
