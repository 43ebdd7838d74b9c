"""Test doubles and contract suites for ledgerlab and its plug-ins (shipped, so a plug-in's tests can use them).

    from ledgerlab.testing import ToyDomain, ScriptedProposer   # a fast domain with a known truth; a script
    ledgerlab.testing.domain_contract                            # pytest suite a domain plug-in runs (docs/domains.md)
    ledgerlab.testing.judge_sim                                  # campaigns simulated against a real judge
    ledgerlab.testing.sleep_domain                               # runs that sleep, for executors

Only the first line's names are imported here: judge_sim loads scipy, domain_contract pytest.
"""

from __future__ import annotations

from ledgerlab.testing.proposers import ScriptedProposer, Step
from ledgerlab.testing.toy_domain import BASELINE, KNOBS, ToyDomain, true_loss

__all__ = ["BASELINE", "KNOBS", "ScriptedProposer", "Step", "ToyDomain", "true_loss"]
