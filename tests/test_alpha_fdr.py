"""The "fdr" alpha policy (ADDIS): what each earlier hypothesis costs, hypotheses in flight, and the FDR it holds."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from ledgerlab.core import alpha
from ledgerlab.core.alpha import addis_alpha, decay
from ledgerlab.core.campaign import FDR_TARGET, judge_settings
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.judge import JudgeSettings
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.core.state import CampaignState
from ledgerlab.storage import events as ev

FDR = JudgeSettings(alpha=0.1, alpha_policy="fdr")


@pytest.mark.parametrize(("exponent", "flat"), [(None, 0), (1.5, 0), (None, 20), (1.5, 10)])
def test_decay_sequences_never_increase_and_sum_to_at_most_one(exponent: float | None, flat: int) -> None:
    terms = [decay(j, exponent, flat) for j in range(1, 200_001)]
    assert all(a >= b for a, b in zip(terms, terms[1:]))
    assert sum(terms) <= 1.0 + 1e-9
    if flat:
        assert terms[0] == terms[flat - 1] > terms[flat]


def test_discarded_and_candidate_hypotheses_cost_nothing() -> None:
    fresh = addis_alpha(FDR, "")
    assert addis_alpha(FDR, "ddcdcc") == fresh
    assert addis_alpha(FDR, "k") < fresh or FDR.fdr_flat > 1  # inside the flat stretch one cost changes nothing
    many = "k" * (FDR.fdr_flat + 5)
    assert addis_alpha(FDR, many) < fresh


def test_an_accept_earns_wealth_and_later_costs_spend_it() -> None:
    before = addis_alpha(FDR, "k" * 60)
    after = addis_alpha(FDR, "k" * 60 + "A")
    assert after > 2 * before
    assert addis_alpha(FDR, "k" * 60 + "A" + "k" * 80) < after


def test_levels_never_exceed_lambda() -> None:
    assert addis_alpha(FDR, "A" * 50) <= FDR.fdr_lambda


def test_a_stream_of_costs_spends_at_most_the_initial_wealth() -> None:
    # With no accept, hypothesis t + 1 of a stream where every hypothesis costs gets (τ − λ)·W0·γ_{t+1}: the
    # levels sum to (τ − λ)·W0·Σγ ≤ (τ − λ)·W0 (the decay's sum is checked above).
    w0 = FDR.fdr_w0 * FDR.alpha
    for t in (0, 1, 7, 30, 400):
        expected = (FDR.fdr_tau - FDR.fdr_lambda) * w0 * decay(1 + t, FDR.fdr_decay, FDR.fdr_flat)
        assert addis_alpha(FDR, "k" * t) == pytest.approx(expected)


def test_history_letters_follow_the_p_values() -> None:
    lam, tau = 0.25, 0.5
    letters = alpha.history([(1, 0.9, False), (2, 0.3, False), (3, 0.1, False), (4, 0.001, True),
                             (5, None, None), (6, None, False)], lam, tau)
    assert letters == "dkcAkk"  # in flight: a cost; no p-value: a cost


# ---------------------------------------------------------------------------------- through the fold


class _Stream:
    def __init__(self) -> None:
        self.state = CampaignState(campaign_id="c")
        self.count = 0

    def _apply(self, event: ev.Event) -> None:
        self.state._apply(event, datetime(2026, 1, 1, tzinfo=UTC))

    def create(self) -> str:
        self.count += 1
        hid = f"h{self.count}"
        self._apply(ev.HypothesisProposed(hypothesis_id=hid, agent="a", proposer="p", rationale="",
                                          parent_candidate_id="base", diff="", changes={}))
        self._apply(ev.CandidateCreated(candidate_id=f"k{self.count}", hypothesis_id=hid,
                                        parent_candidate_id="base"))
        return hid

    def decide(self, hid: str, p: float | None, decision: str = "reject", test: str = "welch") -> None:
        self._apply(ev.VerdictReached(hypothesis_id=hid, decision=decision, test=test, p_value=p))

    def seen(self, hid: str) -> str:
        return alpha.history(self.state.stream_before(self.state.hypotheses[hid]), FDR.fdr_lambda, FDR.fdr_tau)


def test_a_hypothesis_sees_only_what_was_decided_before_it_started() -> None:
    s = _Stream()
    a, b, c = s.create(), s.create(), s.create()
    s.decide(a, 0.9)
    d = s.create()  # b and c in flight: costs, whatever their p-values turn out to be
    s.decide(b, 0.001, "accept")
    s.decide(c, 0.95)
    e = s.create()
    assert s.seen(d) == "dkk"
    assert s.seen(e) == "dAdk"  # d is still in flight
    f_ = s.create()
    s.decide(s.create(), None, "reject", "stale")  # ended without a test: not in the stream
    assert s.seen(s.create()) == "dAdkkk"
    assert s.seen(f_) == "dAdkk"


# --------------------------------------------------------------------------------------- the guarantee


def _campaign_fdp(rng: random.Random, settings: JudgeSettings, n: int, in_flight: int, share_real: float,
                  effect: float) -> tuple[float, int]:
    """One simulated stream tested `in_flight` at a time: its false discovery proportion and true accepts.

    Nulls are a mix of exactly useless (uniform p) and harmful changes (conservative p), as on a real market.
    """
    decided: list[tuple[int, float, bool]] = []
    pending: list[tuple[int, float, float, bool]] = []  # (index, level, p, real)
    false = true = 0
    for t in range(1, n + 1):
        seen = decided + [(i, None, None) for i, *_ in pending]  # decided ones all precede those in flight
        level = addis_alpha(settings, alpha.history(seen, settings.fdr_lambda, settings.fdr_tau))
        real = rng.random() < share_real
        mu = effect if real else (0.0 if rng.random() < 0.5 else -1.0)
        p = 0.5 * math.erfc(rng.gauss(mu, 1.0) / math.sqrt(2.0))  # one-sided p of a z statistic
        pending.append((t, level, p, real))
        if len(pending) == in_flight or t == n:
            for i, lvl, pv, is_real in pending[:1] if t < n else pending:
                accepted = pv <= lvl
                false += accepted and not is_real
                true += accepted and is_real
                decided.append((i, pv, accepted))
            pending = pending[1:] if t < n else []
    return (false / max(false + true, 1)), true


@pytest.mark.parametrize("in_flight", [1, 4])
def test_false_discovery_rate_holds_by_simulation(in_flight: int) -> None:
    rng = random.Random(2026 + in_flight)
    settings = JudgeSettings(alpha=0.1, alpha_policy="fdr")
    fdps, trues = zip(*(_campaign_fdp(rng, settings, 120, in_flight, 0.1, 3.0) for _ in range(400)))
    fdr = sum(fdps) / len(fdps)
    se = math.sqrt(sum((x - fdr) ** 2 for x in fdps) / (len(fdps) - 1) / len(fdps))
    assert fdr <= 0.1 + 3 * se
    assert sum(trues) / len(trues) > 1.0  # and it finds real effects: of about 12 per stream


def test_concurrent_designs_default_to_the_fdr_policy() -> None:
    ab = MetricSpec(name="conversion", direction="maximize", alpha=0.05)
    s = judge_settings(CampaignConfig(), ab, "concurrent")
    assert (s.alpha_policy, s.alpha) == ("fdr", FDR_TARGET)
    assert judge_settings(CampaignConfig(), ab, "independent").alpha_policy == "fixed"
    chosen = judge_settings(CampaignConfig(judge={"alpha_policy": "fixed"}), ab, "concurrent")
    assert (chosen.alpha_policy, chosen.alpha) == ("fixed", 0.05)
    assert judge_settings(CampaignConfig(judge={"alpha": 0.2}), ab, "concurrent").alpha == 0.2
    assert judge_settings(CampaignConfig(judge={"kind": "greedy"}), ab, "concurrent").alpha_policy == "fixed"
