"""The offline knob proposers: valid edits, no repeats, step adaptation, near-miss combination, and that the
adaptive one beats the uniform baseline on a toy objective."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from ledgerlab.core.config import ProposerConfig
from ledgerlab.core.knobs import read_knob, write_knob
from ledgerlab.core.patches import candidate_id, make_diff
from ledgerlab.core.proposers.knob import KnobProposer, RandomKnobProposer
from ledgerlab.core.protocols import HistoryItem, Knob, MetricSpec, Proposal, ProposalContext
from ledgerlab.core.registry import load_proposer
from ledgerlab.errors import ProposerError

FILE = "train.py"
FILES = {FILE: '"""A toy script."""\n\nLR = 0.003  # peak learning rate\nDEPTH = 4\nWARMUP = 0.05\n'
               'ACT = "gelu"\n\n\ndef lr() -> float:\n    return LR\n'}
LR = Knob(name="LR", file=FILE, kind="float", low=1e-4, high=1e-1, log=True)
DEPTH = Knob(name="DEPTH", file=FILE, kind="int", low=1, high=16, log=True)
WARMUP = Knob(name="WARMUP", file=FILE, kind="float", low=0.0, high=0.5)
ACT = Knob(name="ACT", file=FILE, kind="choice", choices=("relu", "gelu", "silu"))
KNOBS = (LR, DEPTH, WARMUP, ACT)
METRIC = MetricSpec(name="loss", direction="minimize")


def context(files: Mapping[str, str] = FILES, history: Sequence[HistoryItem] = (), incumbent: str = "c0",
            seed: int = 0, knobs: Sequence[Knob] = KNOBS) -> ProposalContext:
    return ProposalContext(domain_name="toy", description="", metric=METRIC, knobs=tuple(knobs), seed=seed,
                           incumbent_id=incumbent, incumbent_files=dict(files), history=tuple(history))


def item(old: Mapping[str, str], new: Mapping[str, str], changes: dict[str, Any], status: str = "rejected",
         parent: str = "c0", effect: float | None = None, agent: str = "agent-0", n: int = 0,
         rationale: str = "r") -> HistoryItem:
    return HistoryItem(hypothesis_id=f"h{n}", agent=agent, rationale=rationale, parent_candidate_id=parent,
                       diff=make_diff(old, new), changes=changes, status=status, effect=effect)


def with_values(files: Mapping[str, str] = FILES, **values: Any) -> dict[str, str]:
    """The toy files with some knob lines rewritten."""
    by_name = {k.name: k for k in KNOBS}
    out = dict(files)
    for name, value in values.items():
        out = write_knob(out, by_name[name], value)
    return out


def assert_valid(old: Mapping[str, str], proposal: Proposal, knobs: Sequence[Knob]) -> None:
    """Values in range, read back as proposed; only the changed knobs' lines differ; a one-line rationale."""
    by_name = {k.name: k for k in knobs}
    assert proposal.rationale.strip() and "\n" not in proposal.rationale
    assert proposal.changes and set(proposal.changes) <= set(by_name)
    assert set(proposal.files) == set(old)
    for name, value in proposal.changes.items():
        knob = by_name[name]
        if knob.kind in ("choice", "bool"):
            assert value in (knob.choices or (False, True))
        else:
            assert isinstance(value, int if knob.kind == "int" else float) and not isinstance(value, bool)
            assert knob.low <= value <= knob.high
        assert read_knob(proposal.files, knob) == value
    changed = []
    for name in old:
        before, after = old[name].splitlines(), proposal.files[name].splitlines()
        assert len(before) == len(after)
        changed += [line for line, was in zip(after, before) if line != was]
    assert len(changed) == len(proposal.changes)
    assert all(any(line.startswith(f"{n} ") for n in proposal.changes) for line in changed)


def toy_loss(files: Mapping[str, str]) -> float:
    """A smooth bowl: best at LR 4e-4, DEPTH 11, WARMUP 0.2, ACT silu."""
    lr, depth, warmup, act = (read_knob(dict(files), k) for k in KNOBS)
    return (0.5 * math.log2(lr / 4e-4) ** 2 + 0.05 * (depth - 11) ** 2 + 10 * (warmup - 0.2) ** 2
            + {"silu": 0.0, "gelu": 0.1, "relu": 0.3}[act])


def simulate(proposer: Any, seed: int, steps: int, loss: Callable[[Mapping[str, str]], float] = toy_loss,
             files: Mapping[str, str] = FILES, knobs: Sequence[Knob] = KNOBS, delta: float = 0.02,
             judge: Callable[[float], bool] | None = None,
             check: Callable[[Mapping[str, str]], None] = lambda files: None,
             ) -> tuple[float, list[HistoryItem]]:
    """A campaign with an exact judge: accept when the loss improves by over `delta`; checks each proposal."""
    incumbent, history = dict(files), []
    accept = judge or (lambda gain: gain > delta)
    for n in range(steps):
        parent = candidate_id(incumbent)
        proposal = proposer.propose(context(incumbent, history, parent, seed * 1000 + n, knobs))
        if proposal is None:
            break
        assert_valid(incumbent, proposal, knobs)
        check(proposal.files)
        gain = loss(incumbent) - loss(proposal.files)
        status = "accepted" if accept(gain) else "rejected"
        history.append(item(incumbent, proposal.files, dict(proposal.changes), status, parent, gain, n=n,
                            rationale=proposal.rationale))
        if status == "accepted":
            incumbent = dict(proposal.files)
    return loss(incumbent), history


def tried_keys(history: Sequence[HistoryItem]) -> list[tuple[str, frozenset]]:
    return [(h.parent_candidate_id, frozenset(h.changes.items())) for h in history]


# ------------------------------------------------------------------------------------------ validity


@pytest.mark.parametrize("proposer", [KnobProposer(), RandomKnobProposer()], ids=["knob", "random"])
def test_proposals_are_valid_over_a_campaign(proposer: Any) -> None:
    for seed in range(4):
        _, history = simulate(proposer, seed, 30)  # simulate asserts every proposal is valid
        assert len(history) == 30


def test_first_proposal_changes_one_line_with_a_readable_rationale() -> None:
    proposal = KnobProposer(ProposerConfig()).propose(context(knobs=(LR,)))
    assert proposal is not None
    assert proposal.rationale.startswith("LR: 0.003 → ")
    assert proposal.rationale.endswith("first step on this knob)")
    assert make_diff(FILES, proposal.files).count("\n+LR = ") == 1


def test_entry_points_load_both_proposers() -> None:
    assert isinstance(load_proposer(ProposerConfig(kind="knob")), KnobProposer)
    assert isinstance(load_proposer(ProposerConfig(kind="random")), RandomKnobProposer)


def test_a_domain_without_knobs_is_an_error_that_says_what_to_do() -> None:
    for proposer in (KnobProposer(), RandomKnobProposer()):
        with pytest.raises(ProposerError, match="declares no knobs"):
            proposer.propose(context(knobs=()))


def test_knobs_missing_from_the_incumbent_are_skipped() -> None:
    ghost = Knob(name="GHOST", file=FILE, kind="int", low=0, high=9)
    for seed in range(10):
        proposal = KnobProposer().propose(context(knobs=(ghost, DEPTH), seed=seed))
        assert proposal is not None and set(proposal.changes) == {"DEPTH"}
    with pytest.raises(ProposerError, match="no knobs|none of the knobs"):
        KnobProposer().propose(context(knobs=(ghost,)))


# ---------------------------------------------------------------------------------------- no repeats


@pytest.mark.parametrize("proposer", [KnobProposer(), RandomKnobProposer()], ids=["knob", "random"])
def test_never_repeats_a_change_on_the_same_incumbent(proposer: Any) -> None:
    # Accept only big gains: long runs of rejections on one incumbent, a few incumbent changes.
    _, history = simulate(proposer, 7, 120, delta=0.3)
    keys = tried_keys(history)
    assert len(keys) == len(set(keys))
    assert len({h.parent_candidate_id for h in history}) > 1


def test_all_rejected_exhausts_the_ladders_without_repeats() -> None:
    _, history = simulate(KnobProposer(), 1, 500, judge=lambda gain: False)
    keys = tried_keys(history)
    assert 20 < len(history) < 100 and len(keys) == len(set(keys))  # a finite ladder per knob, then None
    assert KnobProposer().propose(context(history=history, incumbent=candidate_id(FILES))) is None


def test_skips_changes_that_other_agents_are_testing() -> None:
    first = KnobProposer().propose(context(knobs=(LR,)))
    assert first is not None
    for status in ("proposed", "testing"):
        busy = item(FILES, first.files, dict(first.changes), status, agent="agent-1")
        again = KnobProposer().propose(context(history=[busy], knobs=(LR,)))
        assert again is not None and again.changes != first.changes


def test_changes_read_from_the_diff_when_an_item_has_none() -> None:
    # An LLM proposer's hypothesis: no structured changes, only the diff.
    up = item(FILES, with_values(LR=0.006), {}, "rejected")
    for seed in range(10):
        proposal = KnobProposer().propose(context(history=[up], knobs=(LR,), seed=seed))
        assert proposal is not None and proposal.changes == {"LR": 0.0015}


def test_returns_none_when_a_tiny_space_is_exhausted() -> None:
    files = {"cfg.toml": 'flag = false\nmode = "b"\n'}
    knobs = (Knob(name="flag", file="cfg.toml", kind="bool", choices=(False, True)),
             Knob(name="mode", file="cfg.toml", kind="choice", choices=("a", "b", "c")))
    for proposer in (KnobProposer(), RandomKnobProposer()):
        _, history = simulate(proposer, 0, 10, loss=lambda f: 0.0, files=files, knobs=knobs)
        assert sorted(tuple(h.changes.items()) for h in history) == [
            (("flag", True),), (("mode", "a"),), (("mode", "c"),)]


# ---------------------------------------------------------------------------------------- step sizes


def lr_after(history: Sequence[HistoryItem], incumbent: str = "c0", files: Mapping[str, str] = FILES,
             seed: int = 0) -> Proposal:
    proposal = KnobProposer().propose(context(files, history, incumbent, seed, knobs=(LR,)))
    assert proposal is not None and set(proposal.changes) == {"LR"}
    return proposal


def test_first_steps_are_moderate() -> None:
    lrs = {lr_after([], seed=s).changes["LR"] for s in range(20)}
    assert lrs == {0.006, 0.0015}  # ×2 or ÷2 on a log knob
    warmups = set()
    for seed in range(20):
        proposal = KnobProposer().propose(context(knobs=(WARMUP,), seed=seed))
        warmups.add(proposal.changes["WARMUP"])
    assert warmups == {0.175, 0.0}  # a quarter of the range each way, clamped at the bound


def test_after_an_accepted_step_it_keeps_going_with_a_larger_step() -> None:
    before, now = with_values(LR=0.0015), FILES
    accepted = item(before, now, {"LR": 0.003}, "accepted", parent="c-old", effect=0.1)
    for seed in range(10):
        proposal = lr_after([accepted], "c1", now, seed)
        assert proposal.changes == {"LR": 0.012}
        assert "×4" in proposal.rationale and "accepted" in proposal.rationale


def test_after_an_overshoot_it_returns_to_the_step_that_worked() -> None:
    accepted = item(with_values(LR=0.0015), FILES, {"LR": 0.003}, "accepted", parent="c-old", effect=0.1)
    overshoot = item(FILES, with_values(LR=0.012), {"LR": 0.012}, "rejected", parent="c1", effect=-0.2)
    assert lr_after([accepted, overshoot], "c1").changes == {"LR": 0.006}


def test_after_a_rejection_it_tries_the_other_direction_then_smaller_steps() -> None:
    up = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=-0.1, n=1)
    down = lr_after([up])
    assert down.changes == {"LR": 0.0015}
    assert down.rationale == "LR: 0.003 → 0.0015 (halve; the last step up made it clearly worse: the other way)"
    null = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=0.0, n=1)
    assert lr_after([null]).rationale == "LR: 0.003 → 0.0015 (halve; the last step up was rejected)"
    both = [up, item(FILES, down.files, dict(down.changes), "rejected", effect=-0.1, n=2)]
    finer = lr_after(both)
    assert finer.changes["LR"] in (0.004243, 0.002121)  # ×√2 either way
    assert "finer" in finer.rationale


def test_step_sizes_shrink_to_a_resolution_and_stop() -> None:
    _, history = simulate(KnobProposer(), 0, 100, knobs=(LR,), judge=lambda gain: False)
    steps = [abs(math.log2(h.changes["LR"] / 0.003)) for h in history]  # in doublings
    halving = [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]  # ×2, ×√2 ... ×2^(1/16), both ways
    assert steps == pytest.approx(halving, abs=0.002)


def test_int_knobs_round_and_clamp_at_the_bound() -> None:
    files = with_values(DEPTH=16)
    for seed in range(10):
        proposal = KnobProposer().propose(context(files, knobs=(DEPTH,), seed=seed))
        assert proposal.changes == {"DEPTH": 8}  # ×2 would pass the upper bound


def test_prefers_knobs_not_yet_tried_on_the_incumbent() -> None:
    lr_up = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=0.0)
    for seed in range(10):
        proposal = KnobProposer().propose(context(history=[lr_up], knobs=(LR, WARMUP), seed=seed))
        assert set(proposal.changes) == {"WARMUP"}


def test_tries_knobs_in_the_declared_order_each_way_by_seed() -> None:
    first = {KnobProposer().propose(context(seed=s)).rationale.split(":")[0] for s in range(20)}
    assert first == {"LR"}  # the domain declares its likeliest knob first
    reordered = {KnobProposer().propose(context(knobs=(WARMUP, LR), seed=s)).rationale.split(":")[0]
                 for s in range(20)}
    assert reordered == {"WARMUP"}
    assert {lr_after([], seed=s).changes["LR"] for s in range(20)} == {0.006, 0.0015}


def test_a_step_that_made_it_clearly_worse_is_tried_the_other_way_next() -> None:
    delta = 0.02
    clearly = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=-0.1)
    slightly = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=-delta / 2)
    metric = METRIC.model_copy(update={"delta": delta})
    for seed in range(10):
        for seen, expected in ((clearly, {"LR": 0.0015}), (slightly, None)):
            ctx = context(history=[seen], knobs=(LR, WARMUP), seed=seed).model_copy(update={"metric": metric})
            proposal = KnobProposer().propose(ctx)
            assert proposal is not None
            if expected is None:
                assert set(proposal.changes) == {"WARMUP"}  # within the noise: move on to an untried knob
            else:
                assert proposal.changes == expected and "clearly worse" in proposal.rationale


# --------------------------------------------------------------------------------------- near misses


def test_combines_two_near_misses_on_the_incumbent() -> None:
    lr = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=0.01, n=1)
    warm = item(FILES, with_values(WARMUP=0.175), {"WARMUP": 0.175}, "rejected", effect=0.004, n=2)
    worse = item(FILES, with_values(DEPTH=8), {"DEPTH": 8}, "rejected", effect=-0.05, n=3)
    proposal = KnobProposer().propose(context(history=[lr, worse, warm]))
    assert proposal is not None and proposal.changes == {"LR": 0.006, "WARMUP": 0.175}
    assert "near-miss" in proposal.rationale
    assert_valid(FILES, proposal, KNOBS)
    tried = item(FILES, proposal.files, dict(proposal.changes), "rejected", effect=-0.001, n=4)
    after = KnobProposer().propose(context(history=[lr, worse, warm, tried]))
    assert after is not None and len(after.changes) == 1  # that pair is done; DEPTH's miss was no near-miss


def test_near_misses_on_an_older_incumbent_are_not_combined() -> None:
    lr = item(FILES, with_values(LR=0.006), {"LR": 0.006}, "rejected", effect=0.01, n=1)
    warm = item(FILES, with_values(WARMUP=0.175), {"WARMUP": 0.175}, "rejected", effect=0.004, n=2)
    proposal = KnobProposer().propose(context(history=[lr, warm], incumbent="c1"))
    assert proposal is not None and len(proposal.changes) == 1


# --------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("proposer", [KnobProposer(), RandomKnobProposer()], ids=["knob", "random"])
def test_deterministic_given_the_seed(proposer: Any) -> None:
    _, history = simulate(proposer, 3, 12)
    ctx = context(history=history, incumbent=candidate_id(FILES), seed=42)
    assert proposer.propose(ctx) == proposer.propose(ctx)
    assert simulate(proposer, 5, 15) == simulate(proposer, 5, 15)
    assert len({tuple(proposer.propose(context(seed=s)).changes.items()) for s in range(20)}) > 1


# --------------------------------------------------------------------------------------- optimisation


def test_knob_proposer_beats_the_random_baseline_on_a_toy_objective() -> None:
    budget, seeds = 30, range(20)
    start = toy_loss(FILES)
    knob = [simulate(KnobProposer(), s, budget)[0] for s in seeds]
    rand = [simulate(RandomKnobProposer(), s, budget)[0] for s in seeds]
    assert statistics.mean(knob) < statistics.mean(rand)
    assert statistics.mean(knob) < 0.5 * start
    assert sum(k < r for k, r in zip(knob, rand)) > len(knob) / 2


# ------------------------------------------------------------------------------------------ domains


def domains() -> list[Any]:
    from ledgerlab.domains.marketing.domain import MarketingDomain
    from ledgerlab.domains.ml_training.domain import MLTrainingDomain
    return [MarketingDomain(), MLTrainingDomain(device="cpu")]


@pytest.mark.parametrize("proposer", [KnobProposer(), RandomKnobProposer()], ids=["knob", "random"])
def test_proposals_on_the_real_domains_validate(proposer: Any) -> None:
    for domain in domains():
        counter = iter(range(10_000))  # accept every third proposal: steps also start from moved incumbents
        _, history = simulate(proposer, 0, 25, loss=lambda f: 0.0, files=domain.baseline(),
                              knobs=tuple(domain.knobs()), judge=lambda gain: next(counter) % 3 == 0,
                              check=domain.validate)
        assert len(history) == 25
