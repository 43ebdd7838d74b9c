"""`--seed` decides the replicate seeds: through `ledgerlab run` / `resume` on the marketing domain (fast runs).

The baseline's first seed is `planner.first_seed(seed)`, recorded in CampaignStarted (schema v2); a v1
CampaignStarted is upcast to 0, the seed such campaigns started on, so a campaign resumed from an older
ledger keeps its seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledgerlab.cli.main import app
from ledgerlab.core.planner import SEED_STRIDE, first_seed
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner()
SMALL = ("--option", "visitors_per_run=2000")  # a few milliseconds per run


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _sql(folder: Path, query: str) -> list[dict[str, Any]]:
    return json.loads(_cli("sql", query, "--dir", str(folder), "--format", "json"))


def _baseline_runs(folder: Path) -> list[tuple[int, float]]:
    """(seed, value) of the baseline's calibration runs, in seed order."""
    rows = _sql(folder, "select seed, value from runs where role = 'incumbent' and hypothesis_id is null "
                        "and status = 'finished' order by seed")
    return [(r["seed"], r["value"]) for r in rows]


def _campaign(folder: Path, seed: int) -> list[tuple[int, float]]:
    _cli("run", "marketing", "--dir", str(folder), "--max-hypotheses", "2", "--seed", str(seed), *SMALL)
    return _baseline_runs(folder)


# ------------------------------------------------------------------------------------------ the seed


def test_first_seed_keeps_seed_0_and_gives_each_seed_its_own_range() -> None:
    assert first_seed(0) == 0  # what every campaign ran on before: old ledgers and benchmarks unchanged
    assert [first_seed(s) for s in (1, 11, 2146)] == [1_000_000, 11_000_000, 2_146_000_000]
    hashed = [first_seed(s) for s in (-1, -7, 2147, 10**6, 2**70)]
    assert len(set(hashed)) == len(hashed) and first_seed(-7) == first_seed(-7)
    assert all(SEED_STRIDE <= b and b + SEED_STRIDE < 2**31 and b % 1000 == 0 for b in hashed)


def test_campaign_seeds_change_the_replicates_and_repeat_exactly(tmp_path: Path) -> None:
    eleven, twelve, again = (_campaign(tmp_path / name, seed) for name, seed in
                             (("a", 11), ("b", 12), ("c", 11)))
    base = first_seed(11)
    assert [seed for seed, _ in eleven] == [base, base + 1, base + 2]  # 3 calibration runs (concurrent design)
    assert [seed for seed, _ in twelve] == [first_seed(12) + i for i in range(3)]
    assert {v for _, v in eleven}.isdisjoint({v for _, v in twelve})  # other seeds: other visitors
    assert again == eleven  # the same seed: the same draws
    started = _sql(tmp_path / "a", "select payload->>'seed' as seed, (payload->>'seed_base')::BIGINT as base, "
                                   "schema_version from events where type = 'CampaignStarted'")
    assert started == [{"seed": "11", "base": base, "schema_version": ev.CampaignStarted.SCHEMA_VERSION}]
    candidates = _sql(tmp_path / "a", "select min(seed) as lo, max(seed) as hi from runs")[0]
    assert base <= candidates["lo"] and candidates["hi"] < base + 1000  # all of the campaign's seeds


def test_seed_0_keeps_the_seeds_campaigns_always_had(tmp_path: Path) -> None:
    _cli("run", "marketing", "--dir", str(tmp_path), "--max-hypotheses", "1", *SMALL)
    assert [seed for seed, _ in _baseline_runs(tmp_path)] == [0, 1, 2]


# ---------------------------------------------------------------------------------------- resuming


def test_a_v1_campaign_started_upcasts_to_seed_base_0() -> None:
    payload = {"domain": "d", "metric": {"name": "m", "direction": "minimize"}, "baseline_files": {"f": "x"},
               "baseline_candidate_id": "c", "seed": 11}
    assert ev.decode("CampaignStarted", 1, json.dumps(payload)).seed_base == 0  # type: ignore[attr-defined]
    now = ev.CampaignStarted(**payload, seed_base=first_seed(11))  # type: ignore[arg-type]
    event_type, version, text = ev.encode(now)
    assert version == ev.CampaignStarted.SCHEMA_VERSION and ev.decode(event_type, version, text) == now


def _v1_encode(event: ev.Event) -> tuple[str, int, str]:
    """How CampaignStarted was written before schema v2: no seed_base."""
    event_type, version, text = _ENCODE(event)
    if event_type != "CampaignStarted":
        return event_type, version, text
    return event_type, 1, json.dumps({k: v for k, v in json.loads(text).items() if k != "seed_base"})


_ENCODE = ev.encode


@pytest.mark.parametrize("schema", [1, ev.CampaignStarted.SCHEMA_VERSION])  # v1 and today's
def test_resume_keeps_the_seeds_the_campaign_started_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          schema: int) -> None:
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.executors.local import LocalExecutor
    from ledgerlab.core.proposers.knob import KnobProposer
    from ledgerlab.domains.marketing.domain import MarketingDomain

    domain = MarketingDomain(visitors_per_run=2000)
    config = CampaignConfig(domain="marketing", seed=11, budgets={"max_hypotheses": 2},
                            domain_options={"visitors_per_run": 2000})
    with monkeypatch.context() as patch:
        if schema == 1:
            patch.setattr(ev, "encode", _v1_encode)
        with DuckDBLedger(tmp_path / ".ledgerlab" / "ledger.duckdb") as store:
            first = Campaign(store, domain, config, agents=[Agent("agent-0", KnobProposer())],
                             executor=LocalExecutor(domain), runs_dir=tmp_path / "runs")
            first.on_event = lambda row: first.request_stop("test") if row.type == "RunFinished" else None
            assert first.run().status == "paused"
    domain.close()
    assert _sql(tmp_path, "select schema_version from events where type = 'CampaignStarted'") == \
        [{"schema_version": schema}]
    assert "finished" in _cli("resume", "--dir", str(tmp_path))
    base = first_seed(11) if schema >= 2 else 0  # a v1 campaign ran its baseline from 0 whatever its seed
    assert [seed for seed, _ in _baseline_runs(tmp_path)] == [base, base + 1, base + 2]
    seeds = _sql(tmp_path, "select min(seed) as lo, max(seed) as hi, count(*) as n from runs")[0]
    assert seeds["n"] > 3 and base <= seeds["lo"] and seeds["hi"] < base + 1000
