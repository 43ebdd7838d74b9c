"""`ledgerlab transfer` through the real CLI in separate processes, on real campaigns and real ledger files.

A marketing campaign (fixed α, so 20 hypotheses accept a change) and one of the toy domain (registered as a
plug-in for the subprocesses through a dist-info folder on PYTHONPATH) are the sources; each is re-measured at
another setting, killed mid-transfer and resumed, and its table is read back from the events.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerlab.core.state import CampaignState, fold
from ledgerlab.core.transfer import REEXPRESSED, VERDICTS, source_of, table, verdict_of
from ledgerlab.storage.events import StoredEvent
from ledgerlab.storage.ledger import read_only_connection, to_stored
from tests.host_processes import until

TESTS = Path(__file__).resolve().parent
_EVENTS = ("SELECT seq, event_id, campaign_id, version, type, schema_version, payload, recorded_at, prev_hash, hash "
           "FROM events ORDER BY seq")


def _toy_target() -> tuple[str, str]:
    """The toy domain's `module:Class` and the folder to put on PYTHONPATH, wherever it lives now."""
    try:
        import ledgerlab.testing.toy_domain  # noqa: F401 - it may have moved into the package
        return "ledgerlab.testing.toy_domain:ToyDomain", ""
    except ImportError:
        return "toy_domain:ToyDomain", str(TESTS)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH on which the toy domain is an installed plug-in (entry point `toy`)."""
    root = tmp_path_factory.mktemp("plugin")
    info = root / "toy_plugin-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.0\n")
    target, folder = _toy_target()
    (info / "entry_points.txt").write_text(f"[ledgerlab.domains]\ntoy = {target}\n")
    return os.pathsep.join(p for p in (str(root), folder, os.environ.get("PYTHONPATH", "")) if p)


def _env(plugin: str = "") -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **({"PYTHONPATH": plugin} if plugin else {})}


def _cli(*args: str, plugin: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerlab", *args], env=_env(plugin), capture_output=True,
                          text=True, timeout=timeout)


def _spawn(*args: str, plugin: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ledgerlab", *args], env=_env(plugin), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _rows(folder: Path) -> list[StoredEvent]:
    """Every event, read as another process reads a ledger (through the runner's socket while one runs)."""
    with read_only_connection(folder / ".ledgerlab" / "ledger.duckdb") as con:
        return [to_stored(row) for row in con.execute(_EVENTS).fetchall()]


def _states(folder: Path) -> list[CampaignState]:
    rows = _rows(folder)
    ids = list(dict.fromkeys(row.campaign_id for row in rows))
    return [fold(cid, [row for row in rows if row.campaign_id == cid]) for cid in ids]


def _types(folder: Path, campaign_id: str) -> list[str]:
    return [row.type for row in _rows(folder) if row.campaign_id == campaign_id]


def _transfers(folder: Path) -> list[CampaignState]:
    return [s for s in _states(folder) if s.started is not None and s.started.kind == "transfer"]


def _one_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -------------------------------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished marketing campaign that accepted a change (α = 0.05 per hypothesis, 20 hypotheses)."""
    folder = tmp_path_factory.mktemp("shop")
    (folder / "ledgerlab.toml").write_text('[domain]\nname = "marketing"\n[judge]\nalpha_policy = "fixed"\n'
                                           "alpha = 0.05\n")
    done = _cli("run", "--dir", str(folder), "--max-hypotheses", "20", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(v.decision == "accept" for s in _states(folder) for v in s.verdicts)
    return folder


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, plugin_path: str) -> Path:
    """A finished toy campaign (knob proposer on a quadratic bowl) that accepted changes."""
    folder = tmp_path_factory.mktemp("toy")
    done = _cli("run", "toy", "--dir", str(folder), "--max-hypotheses", "10", "-q", plugin=plugin_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sum(v.decision == "accept" for v in _states(folder)[0].verdicts) >= 2
    return folder


def _copy(source: Path, tmp_path: Path) -> Path:
    """A copy of a finished project folder (its ledger is closed), so each test writes its own."""
    folder = tmp_path / "project"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("runs", "*.sock", "run.lock"))
    return folder


# ----------------------------------------------------------------------------------------- tests


def test_marketing_transfer_records_a_transfer_campaign_and_prints_its_table(shop: Path, tmp_path: Path) -> None:
    folder = _copy(shop, tmp_path)
    source = _states(folder)[-1]
    accepted = [v.hypothesis_id for v in source.verdicts if v.decision == "accept"]
    done = _cli("transfer", "--dir", str(folder), "--option", "market_seed=7", "--seeds", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    (moved,) = _transfers(folder)
    t = moved.started.transfer  # type: ignore[union-attr]
    assert moved.status == "finished" and moved.finish_reason == "transfer_measured"
    assert t["source_campaign_id"] == source.campaign_id and t["options"] == {"market_seed": 7}
    assert [a["source_hypothesis_id"] for a in t["arms"]] == [*accepted, None]  # each change, then the final
    assert min(t["seeds"]) > max(r.seed for r in source.runs.values())  # fresh seeds
    # A/B: each arm ran against the baseline in the same window, on every seed.
    runs = list(moved.runs.values())
    assert all(r.status == "finished" and r.control_value is not None for r in runs)
    assert {r.seed for r in runs} == set(t["seeds"])
    assert len(moved.verdicts) == len(t["arms"])
    assert all(v.details["transfer"] in VERDICTS and v.test == "two-proportion z" for v in moved.verdicts)
    rows = table(moved)
    assert [r.label for r in rows][-1] == "final incumbent" and all(r.n == 4 for r in rows)
    for row in rows:  # the printed table is the one the events give
        assert row.verdict in done.stdout and row.label in done.stdout
    status = _cli("status", "--dir", str(folder))
    assert status.returncode == 0 and "transfer of " + source.campaign_id in status.stdout
    assert all(row.label in status.stdout for row in rows)
    report = json.loads(_cli("status", "--dir", str(folder), "--format", "json").stdout)
    assert report["kind"] == "transfer" and [r["label"] for r in report["transfer"]] == [r.label for r in rows]
    assert [(r["verdict"], r["n"]) for r in report["transfer"]] == [(r.verdict, r.n) for r in rows]
    checked = _cli("verify", "--dir", str(folder)).stdout  # (signed by the module's key: not this test's)
    assert "chain intact" in checked and "hypothesis_events" in checked and "differ" not in checked


def test_toy_transfer_killed_mid_way_resumes_from_its_events(toy: Path, tmp_path: Path, plugin_path: str) -> None:
    folder = _copy(toy, tmp_path)
    # 9 runs of 0.6 s: killed after 2, with 4 s to spare (runs sleep: load slows them only).
    proc = _spawn("transfer", "--dir", str(folder), "--option", "sleep_s=0.6", "--seeds", "3", plugin=plugin_path)

    def some_finished() -> bool:
        moved = _transfers(folder) if (folder / ".ledgerlab").exists() else []
        return bool(moved) and sum(r.status == "finished" for r in moved[0].runs.values()) >= 2

    try:
        until("two transfer runs finished", some_finished, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    (cut,) = _transfers(folder)
    before = _types(folder, cut.campaign_id)
    assert "CampaignFinished" not in before
    done = _cli("transfer", "--dir", str(folder), plugin=plugin_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming transfer campaign " + cut.campaign_id in done.stdout
    after = _types(folder, cut.campaign_id)
    assert after[:len(before)] == before and "CampaignResumed" in after[len(before):]
    (moved,) = _transfers(folder)
    assert moved.status == "finished"
    # Every (candidate, seed) ran once to its end, whatever the kill cut: nothing lost, nothing doubled.
    pairs = [(r.candidate_id, r.seed) for r in moved.runs.values()]
    assert len(pairs) == len(set(pairs)) and all(r.status == "finished" for r in moved.runs.values())
    distinct = {h.candidate_id for h in moved.hypotheses.values()} | {moved.started.baseline_candidate_id}  # type: ignore[union-attr]
    assert len(pairs) == 3 * len(distinct)
    # The toy's changes move X toward the bowl's floor: each holds at the new setting, by a paired t.
    assert all(v.test.startswith("paired") for v in moved.verdicts)
    rows = table(moved)
    assert rows.count(rows[0]) == 1 and [r.verdict for r in rows].count("holds") >= 1
    # The second step on X, made on the baseline through its knob (X = 6), carries the first: it is compared
    # with the sum of both steps' effects in the source.
    carried = [r for r in rows if r.source and r.source.get("sum_of")]
    assert carried and "carries" in carried[0].about and "X = 6" in carried[0].about
    # `ledgerlab run` in the folder starts a new search: it never takes up a transfer campaign.
    status = _cli("status", "--dir", str(folder), plugin=plugin_path)
    assert status.returncode == 0 and "final incumbent" in status.stdout


def test_a_killed_transfer_is_not_taken_up_by_resume(toy: Path, tmp_path: Path, plugin_path: str) -> None:
    folder = _copy(toy, tmp_path)
    # 15 runs of 3 s: still running when the second runner asks (it is killed then).
    proc = _spawn("transfer", "--dir", str(folder), "--option", "sleep_s=3", plugin=plugin_path)
    try:
        until("a transfer run", lambda: bool(_transfers(folder)) and bool(_transfers(folder)[0].runs), proc)
        # A second runner in the folder is refused while the first holds it.
        _one_error(_cli("transfer", "--dir", str(folder), "--option", "sleep_s=0.1", plugin=plugin_path),
                   "is working in")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    _one_error(_cli("resume", "--dir", str(folder), plugin=plugin_path), "no unfinished campaign")
    _one_error(_cli("transfer", "--dir", str(folder), "--option", "sleep_s=0.1", plugin=plugin_path),
               "without --option resumes it")


def test_errors_are_one_line_and_exit_2(shop: Path, toy: Path, tmp_path: Path, plugin_path: str) -> None:
    _one_error(_cli("transfer", "--dir", str(toy), "--option", "no_such_key=1", plugin=plugin_path),
               "--option no_such_key: not an option of domain toy")
    _one_error(_cli("transfer", "--dir", str(shop), "--option", "no_such_key=1"), "unknown option(s) no_such_key")
    _one_error(_cli("transfer", "--dir", str(shop)), "--option KEY=VALUE")
    _one_error(_cli("transfer", "--dir", str(tmp_path / "empty"), "--option", "market_seed=1"), "no ledger in")
    nothing = tmp_path / "nothing"
    done = _cli("run", "marketing", "--dir", str(nothing), "--max-hypotheses", "2", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    (source,) = _states(nothing)
    _one_error(_cli("transfer", "--dir", str(nothing), "--option", "market_seed=7"),
               f"nothing to transfer: campaign {source.campaign_id} accepted no change")


@pytest.mark.parametrize(("source", "effect", "low", "high", "word"), [
    (0.2, 0.15, 0.05, 0.25, "holds"),
    (0.2, 0.08, 0.02, 0.14, "shrinks"),  # a real gain, under half the source's
    (0.2, 0.15, -0.05, 0.35, "shrinks"),  # the same sign, not shown to differ from 0
    (0.2, -0.10, -0.18, -0.02, "reverses"),
    (0.2, -0.10, -0.30, 0.10, "unclear"),
    (0.2, 0.1, None, None, "unclear"),  # no interval
    (None, 0.1, 0.05, 0.15, "unclear"),  # no source effect
    (-0.2, -0.15, -0.25, -0.05, "holds"),  # a source effect below 0 (a confirmed accept can be): sign-symmetric
])
def test_the_verdict_rule(source: float | None, effect: float, low: float | None, high: float | None,
                          word: str) -> None:
    assert verdict_of(source, effect, low, high) == word


@pytest.mark.parametrize("version", [1, 2])
def test_a_campaign_recorded_before_kinds_reads_as_a_search(version: int) -> None:
    from ledgerlab.storage.events import CampaignStarted, decode

    old = {"domain": "toy", "metric": {"name": "loss", "direction": "minimize"}, "baseline_files": {"a": "1"},
           "baseline_candidate_id": "c0", "judge": {"kind": "stats"}}
    started = decode("CampaignStarted", version, old)
    assert isinstance(started, CampaignStarted) and started.kind == "search" and started.transfer is None


def test_a_re_expressed_change_is_compared_with_the_steps_it_carries() -> None:
    def arm(label: str, changes: dict[str, float], effect: float, half: float, note: str = "") -> dict[str, object]:
        return {"label": label, "source_hypothesis_id": f"h-{label}", "changes": changes, "note": note,
                "source_effect": {"effect": effect, "ci_low": effect - half, "ci_high": effect + half,
                                  "basis": "confirmed"}}

    recorded = [arm("#2", {"EMBED_LR": 0.002}, 0.2, 0.3), arm("#5", {"LR": 0.0005}, 0.05, 0.04),
                arm("#3", {"EMBED_LR": 0.008}, 0.06, 0.4, note=REEXPRESSED + ": made there as EMBED_LR = 0.008"),
                arm("#6", {"LR": 0.00025}, 0.01, 0.02)]  # its patch applied: only its own step
    summed = source_of(recorded, 2)
    assert summed is not None and summed["sum_of"] == ["#2", "#3"]
    assert summed["effect"] == pytest.approx(0.26) and summed["ci_high"] - 0.26 == pytest.approx(0.5)  # √(.3²+.4²)
    assert source_of(recorded, 3) == recorded[3]["source_effect"] and source_of(recorded, 0) == recorded[0]["source_effect"]
