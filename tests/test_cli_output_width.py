"""Output that is not a terminal (a log file, a pipe) is never hard-wrapped: commands to copy, ids and numbers
stay whole on their line, whatever the width. Real campaigns through the CLI (typer's runner is not a terminal).
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ledgerlab.cli.main import app

runner = CliRunner()


def test_nothing_is_split_off_a_terminal(tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-name-long-enough-to-push-every-line-past-eighty-columns-" * 2)
    done = runner.invoke(app, ["run", "marketing", "--dir", str(folder), "--max-hypotheses", "4"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert any(f"`ledgerlab status --dir {folder}`" in line for line in lines)  # the command on one line

    shown = runner.invoke(app, ["sql", "select run_id, value, seed, hypothesis_id from runs order by run_id",
                                "--dir", str(folder)])
    assert shown.exit_code == 0, shown.output
    exact = runner.invoke(app, ["sql", "select run_id, value from runs order by run_id", "--dir", str(folder),
                                "--format", "json"])
    for row in json.loads(exact.output):
        assert any(row["run_id"] in line and str(row["value"])[:8] in line for line in shown.output.splitlines())

    hypothesis = runner.invoke(app, ["show", "1", "--dir", str(folder)])
    assert hypothesis.exit_code == 0, hypothesis.output
    status_line = next(line for line in hypothesis.output.splitlines() if " status " in line)
    assert status_line.rstrip(" │").endswith(("accepted", "rejected")) or ")" in status_line  # not cut mid-word
    assert "candi\n" not in hypothesis.output and max(map(len, hypothesis.output.splitlines())) > 80
