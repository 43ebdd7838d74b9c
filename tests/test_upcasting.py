"""Old ledgers keep working: read through the upcasters, verified, and resumed with the judge they ran with.

The ledgers in tests/fixtures/ledgers/ were written by older commits (README.md there says which); each is a
toy campaign paused after two verdicts. Upcasting happens on read only: the stored events stay as written.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core import holdback
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.judge import JudgeSettings
from ledgerlab.core.state import CampaignState
from ledgerlab.errors import ConfigError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger
from ledgerlab.testing import ScriptedProposer, ToyDomain

FIXTURES = Path(__file__).parent / "fixtures" / "ledgers"
SIGNER = "81361b8db27e28a4884f5a60582bc54cd39be585bc9fa33473a899ef93e8f5d2"  # signed the fixtures' checkpoints
SIGNERS = {"v3-3232053.duckdb.gz": "cb247a6a8dba4ff41b7b389bad55519e3b83c79612e8af8593f489e4790fa578",
           "v4-b8885da.duckdb.gz": "4090ecc666d6cad73adf3133e76457f92b1aa80ac5be3456dad60e42b3e6b28d",
           "v5-cdd9a94.duckdb.gz": "e3ca926078ad64542e93fa3939123e8d8049470d2596ee4d1a8e421ac9c12910"}  # others: SIGNER
# The fixture's script (hypotheses 1-3 are in the ledger), then what the resumed campaign proposes.
SCRIPT = [{"X": 5.0}, {"Y": 3}, {"MODE": "fancy"}, {"X": 4.0}, {"Y": 2}, {"MODE": "fancy", "X": 6.0}]
# The ledgers, by the version of their CampaignStarted, and whether that commit rotated seeds.
LEDGERS = {"v1-75186f4.duckdb.gz": (1, False), "v2-ee90f34.duckdb.gz": (2, True),
           "v2-f3d0b51.duckdb.gz": (2, True), "v3-3232053.duckdb.gz": (3, True), "v4-b8885da.duckdb.gz": (4, True),
           "v5-cdd9a94.duckdb.gz": (5, True)}
# The ledgers whose commit recorded every judge setting of its day (accept_from 3, the holdbacks).
COMPLETE = {"v2-f3d0b51.duckdb.gz", "v3-3232053.duckdb.gz", "v4-b8885da.duckdb.gz", "v5-cdd9a94.duckdb.gz"}
# Every judge setting the first campaign loop (899ffd9) recorded; any later one needs an upcaster.
FIRST_RECORDED = {"kind", "alpha", "alpha_policy", "looks", "fixed_n", "futility", "futility_p", "spending", "robust",
                  "trim", "delta", "min_diff_df", "min_expected", "confirm_runs", "calibration_runs"}


def _project(tmp_path: Path, name: str) -> Path:
    """A project folder holding a writable copy of the fixture ledger `name`."""
    root = tmp_path / "proj"
    (root / ".ledgerlab").mkdir(parents=True)
    with gzip.open(FIXTURES / name) as packed:
        (root / ".ledgerlab" / "ledger.duckdb").write_bytes(packed.read())
    return root


def _ledger(root: Path) -> Path:
    return root / ".ledgerlab" / "ledger.duckdb"


def _opening(store: Any) -> ev.StoredEvent:
    (campaign_id,) = store.campaign_ids()
    return store.read(campaign_id)[0]


# ------------------------------------------------------------------------------------------ upcasters


def test_every_judge_setting_reads_back_from_the_oldest_payload() -> None:
    """A setting added to JudgeSettings must get an upcaster saying what older campaigns ran with."""
    payload = {"domain": "d", "metric": {"name": "m"}, "baseline_files": {}, "baseline_candidate_id": "b"}
    started = ev.decode("CampaignStarted", 1, payload)
    assert isinstance(started, ev.CampaignStarted)
    missing = set(JudgeSettings.model_fields) - FIRST_RECORDED - set(started.judge)
    assert not missing, f"no upcaster fills {sorted(missing)} for campaigns recorded before they existed"
    assert started.guardrails == []  # a judge from before guardrails checked none


def test_settings_a_campaign_predates_read_back_as_it_ran() -> None:
    old = ev.decode("CampaignStarted", 2, {"domain": "d", "metric": {}, "baseline_files": {},
                                           "baseline_candidate_id": "b", "judge": {"guardrails": True}})
    settings = holdback.recorded_settings(old.judge)  # type: ignore[attr-defined]
    assert settings.seed_window == 1 and settings.incumbent_seeds == 0  # no rotation
    assert settings.accept_from == 1 and settings.skew_max == math.inf and settings.futility_scale == "p"
    assert settings.futility_min_df == 0 and settings.holdback_max_pairs == settings.holdback_max_runs == 0
    assert settings.guardrails and old.guardrails is None  # type: ignore[attr-defined]  # its domain's
    # v3: imports were tested in the campaign's own stream, dropped at look 1 like its own ideas.
    assert settings.import_alpha == 0 and settings.import_futility_p == settings.futility_p
    judge_v3 = {k: v for k, v in old.judge.items() if not k.startswith("import_")}  # type: ignore[attr-defined]
    v3 = ev.decode("CampaignStarted", 3, {**old.model_dump(), "judge": {**judge_v3, "futility_p": 0.3}})
    assert holdback.recorded_settings(v3.judge).import_futility_p == 0.3  # type: ignore[attr-defined]
    # v4: the imports' stream followed the campaign's alpha policy, at the import_alpha recorded.
    v4_judge = {k: v for k, v in holdback.recorded_settings(v3.judge).model_dump().items()  # type: ignore[attr-defined]
                if k not in ("import_alpha_policy", "import_wealth", "import_bet")}
    v4 = ev.decode("CampaignStarted", 4, {**old.model_dump(), "judge": {**v4_judge, "import_alpha": 0.05}})
    as_run = holdback.recorded_settings(v4.judge)  # type: ignore[attr-defined]
    assert as_run.import_alpha_policy is None and as_run.import_alpha == 0.05
    # v5: every import's look-1 futility bound was import_futility_p, whatever the imports' wealth.
    v5_judge = {k: v for k, v in as_run.model_dump().items() if k != "import_futility_trust"}
    v5 = ev.decode("CampaignStarted", 5, {**old.model_dump(), "judge": {**v5_judge, "import_futility_p": 0.4}})
    assert holdback.recorded_settings(v5.judge).import_futility_trust == 0.4  # type: ignore[attr-defined]
    recorded = {"judge": {"incumbent_seeds": 16, "accept_from": 3, "holdback_max_pairs": 6}}
    now = ev.decode("CampaignStarted", 2, {**old.model_dump(), **recorded})
    assert holdback.recorded_settings(now.judge).model_dump(include=set(recorded["judge"])) == recorded["judge"]  # type: ignore[attr-defined]


def test_a_broken_recorded_judge_is_one_config_error_line() -> None:
    with pytest.raises(ConfigError) as caught:
        holdback.recorded_settings({"looks": [3, 2]})
    assert "\n" not in str(caught.value) and "recorded judge settings" in str(caught.value)
    assert "strictly increasing" in str(caught.value)


# ------------------------------------------------------------------------------ ledgers of old versions


@pytest.mark.parametrize("name", sorted(LEDGERS))
def test_an_old_ledger_verifies_and_shows_its_status(tmp_path: Path, name: str) -> None:
    root = _project(tmp_path, name)
    verified = CliRunner().invoke(app, ["verify", "--dir", str(root), "--trust", SIGNERS.get(name, SIGNER)])
    assert verified.exit_code == 0, verified.output
    assert "chain intact" in verified.output
    status = CliRunner().invoke(app, ["status", "--dir", str(root)])
    assert status.exit_code == 0, status.output
    assert "paused" in status.output and "3 tried: 1 accepted, 1 rejected, 1 patch-rejected" in status.output
    log = CliRunner().invoke(app, ["log", "--dir", str(root), "-t", "CampaignStarted"])
    assert log.exit_code == 0 and "toy loss (minimize)" in log.output, log.output


@pytest.mark.parametrize("name", sorted(LEDGERS))
def test_an_old_campaign_resumes_with_the_judge_it_ran_with(tmp_path: Path, name: str) -> None:
    version, rotated = LEDGERS[name]
    root = _project(tmp_path, name)
    domain = ToyDomain()
    config = CampaignConfig(domain="toy", budgets={"max_hypotheses": len(SCRIPT)})
    with DuckDBLedger(_ledger(root)) as store:
        opening = _opening(store)
        assert opening.schema_version == version
        camp = Campaign(store, domain, config, agents=[Agent("agent-0", ScriptedProposer(SCRIPT))],
                        executor=LocalExecutor(domain), runs_dir=root / "runs", campaign_id=opening.campaign_id)
        assert camp.settings.seed_window == (16 if rotated else 1)
        assert (camp.settings.accept_from, camp.settings.holdback_max_pairs) == \
            ((3, 6) if name in COMPLETE else (1, 0))
        # v1-v3 predate the imports' own stream, v4 alpha-investing for imports, every fixture the futility
        # bound that follows the imports' wealth: each import's bound is the import_futility_p it recorded.
        assert camp.settings.import_alpha == {4: 0.05, 5: 0.1}.get(version, 0)
        assert camp.settings.import_alpha_policy == ("investing" if version == 5 else None)
        assert camp.settings.import_futility_trust == camp.settings.import_futility_p
        old_hypotheses = set(camp.state.hypotheses)
        state = camp.run()
        assert _opening(store) == opening  # the stored event is untouched: upcasting is on read
    assert state.status == "finished" and len(state.hypotheses) == len(SCRIPT)
    resumed = [h for hid, h in state.hypotheses.items() if hid not in old_hypotheses and h.candidate_id]
    assert resumed and all(h.verdict is not None for h in resumed)
    starts = [_seeds(state, h.hypothesis_id) for h in resumed]
    bases = [state.seed_base[h.parent_candidate_id] for h in resumed]
    if rotated:  # a later hypothesis on an incumbent starts further into its seeds
        assert any(seeds[0] != base for seeds, base in zip(starts, bases))
    else:  # replicate i on the incumbent's seed i, as before rotation
        assert all(seeds == list(range(base, base + len(seeds))) for seeds, base in zip(starts, bases))
    assert any(r.role == holdback.ROLE for r in state.runs.values()) == (name in COMPLETE)
    verified = CliRunner().invoke(app, ["verify", "--dir", str(root), "--trust", SIGNERS.get(name, SIGNER)])
    assert verified.exit_code == 0, verified.output


def _seeds(state: CampaignState, hypothesis_id: str) -> list[int]:
    """The seeds of a hypothesis's candidate runs, in the order they were started."""
    return [r.seed for r in state.runs.values() if r.hypothesis_id == hypothesis_id and r.role == "candidate"]
