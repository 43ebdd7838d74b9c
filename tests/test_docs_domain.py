"""The example in docs/domains.md is real: its code runs a campaign through the loop."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.protocols import Domain
from ledgerlab.core.registry import load_proposer
from ledgerlab.storage.memory import InMemoryLedger

DOC = Path(__file__).resolve().parents[1] / "docs" / "domains.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def _load_example(tmp_path: Path):
    path = tmp_path / "pricing_example.py"
    path.write_text(_blocks("python")[0])
    spec = importlib.util.spec_from_file_location("pricing_example", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["pricing_example"] = module
    spec.loader.exec_module(module)
    return module


def test_the_example_domain_is_short_and_implements_the_protocol(tmp_path: Path) -> None:
    code = _blocks("python")[0]
    assert len(code.splitlines()) <= 60
    domain = _load_example(tmp_path).PricingDomain()
    assert isinstance(domain, Domain)


def test_the_example_entry_point_snippet_is_valid_toml() -> None:
    snippet = tomllib.loads(_blocks("toml")[0])
    assert snippet["project"]["entry-points"]["ledgerlab.domains"]["pricing"].endswith(":PricingDomain")


def test_the_example_domain_runs_a_campaign_with_the_knob_proposer(tmp_path: Path) -> None:
    domain = _load_example(tmp_path).PricingDomain()
    config = CampaignConfig(domain="pricing", budgets={"max_hypotheses": 8})
    agent = Agent("agent-0", load_proposer(config.proposer))
    state = Campaign(InMemoryLedger(), domain, config, agents=[agent],
                     executor=LocalExecutor(domain), runs_dir=tmp_path / "runs").run()
    assert state.status == "finished" and len(state.hypotheses) == 8
    assert all(h.status in ("accepted", "rejected", "patch_rejected") for h in state.hypotheses.values())
