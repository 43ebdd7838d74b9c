"""A domain's run design: what its runs measure, recorded when a campaign starts and kept when it resumes.

A domain whose options change what a run measures (the marketing domain's candidates per run, factorial or
not) reports them from its `run_design()` hook; the loop records them in CampaignStarted's environment
and refuses to resume with other values, since the judge pools a hypothesis's runs into one test.
"""

from __future__ import annotations

from typing import Any

from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.protocols import Domain
from ledgerlab.errors import CampaignError


def run_design(domain: Domain) -> dict[str, Any]:
    """What a domain's runs measure, from its options (`run_design()`; DomainBase's default is {})."""
    return dict(as_domain(domain).run_design())


def keep_run_design(recorded: Any, current: dict[str, Any]) -> None:
    """A resumed campaign's runs must measure what its first runs did: one test pools them."""
    if recorded and current and recorded != current:
        changed = ", ".join(f"{k} = {recorded.get(k)!r} (now {current.get(k)!r})"
                            for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k))
        raise CampaignError(f"this campaign's runs were made with {changed}; resuming with other values would "
                            f"pool runs of different designs in one test. Drop those options, or start a new "
                            f"campaign (`ledgerlab run --new`)")
