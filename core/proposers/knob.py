"""Offline proposers over a domain's declared knobs: an adaptive one (`knob`, the default) and a baseline.

Neither needs an API key or the network. Both read each knob's value from the incumbent with `read_knob`,
write the change with `write_knob`, and never propose a change already tried on the incumbent or in flight:

    KnobProposer(settings).propose(context)   # "LR: 0.003 → 0.0015 (halve; the last step up was rejected)"
    RandomKnobProposer(settings).propose(context)   # one knob set to a uniformly random valid value
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from ledgerlab.core.config import ProposerConfig
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.patches import candidate_id
from ledgerlab.core.proposers.knob_values import (
    Key,
    Seen,
    change_key,
    clamp,
    parse_history,
    readable_knobs,
    round_sig,
    show,
)
from ledgerlab.core.protocols import EventSink, Knob, Proposal, ProposalContext

DECIDED = frozenset({"accepted", "rejected"})
LOG_START, LOG_FINEST = 1.0, 1 / 16  # in doublings: start at ×2, stop refining below ×1.044
LINEAR_START, LINEAR_FINEST = 1 / 4, 1 / 64  # as fractions of the knob's range
RANDOM_ATTEMPTS = 200
NEAR_MISS_KNOBS = 4  # combine pairs among the best near-misses of this many knobs


# -------------------------------------------------------------------------------------- step planning


@dataclass(frozen=True)
class Plan:
    """Where to move a knob next: a preferred direction, a step size, and why."""

    direction: int  # +1: up (numbers) or towards later choices; -1: the other way
    step: float  # doublings for log knobs, knob units for linear ones, positions for choices
    why: str
    momentum: bool = False  # the last move on this knob was accepted
    # The last move on this knob made things clearly worse (effect below -δ): the other way is the likelier
    # gain, so it is tried before knobs not yet touched (a line search, not a sweep over every knob first).
    rebound: bool = False


def _is_log(knob: Knob, value: Any) -> bool:
    """Whether to step `knob` multiplicatively from `value` (only possible from a positive value)."""
    return knob.log and value > 0 and (knob.low is None or knob.low > 0)


def _span(knob: Knob, value: Any, log: bool) -> float:
    """The largest sensible step: the whole range (a guess from the value when unbounded)."""
    if knob.low is None or knob.high is None:
        return 4.0 if log else max(abs(value), 1.0) * 2
    return math.log2(knob.high / knob.low) if log else float(knob.high - knob.low)


def _start_step(knob: Knob, value: Any) -> float:
    """The first step on a knob: ×2 for log knobs, a quarter of the range for linear ones."""
    if knob.kind in ("choice", "bool"):
        return 1.0
    log = _is_log(knob, value)
    if log:
        return LOG_START
    return max(_span(knob, value, log) * LINEAR_START, 1.0 if knob.kind == "int" else 0.0)


def _measure(knob: Knob, old: Any, new: Any) -> tuple[int, float] | None:
    """A move's direction and size on the knob's scale; None when it has neither (bools, unknown values)."""
    if knob.kind == "choice":
        if old not in knob.choices or new not in knob.choices or old == new:
            return None
        shift = knob.choices.index(new) - knob.choices.index(old)
        return (1 if shift > 0 else -1), float(abs(shift))
    if knob.kind == "bool" or not all(isinstance(v, (int, float)) for v in (old, new)) or old == new:
        return None
    size = abs(math.log2(new / old)) if _is_log(knob, old) and new > 0 else abs(new - old)
    return (1 if new > old else -1), size


def _plan(knob: Knob, value: Any, moves: list[Seen], rng: random.Random, delta: float = 0.0) -> Plan:
    """Fold the knob's decided single-knob moves, oldest first, into the next step."""
    plan = Plan(rng.choice((1, -1)), _start_step(knob, value), "first step on this knob")
    for seen in moves:
        measured = _measure(knob, seen.old[knob.name], seen.new[knob.name])
        if measured is None:
            continue
        direction, size = measured
        word = "up" if direction > 0 else "down"
        if seen.item.status == "accepted":
            plan = Plan(direction, size * 2, f"the last step {word} was accepted: a larger one", True)
        elif plan.momentum and direction == plan.direction:  # overshot: go back to the step that worked
            plan = Plan(direction, size / 2, f"the larger step {word} was rejected: the step that worked")
        elif seen.item.effect is not None and seen.item.effect < -delta:
            plan = Plan(-direction, size, f"the last step {word} made it clearly worse: the other way", rebound=True)
        else:
            plan = Plan(-direction, size, f"the last step {word} was rejected")
    return plan


def _moves_by_knob(seen: list[Seen], current: Mapping[str, tuple[Knob, Any]],
                   incumbent_id: str) -> dict[str, list[Seen]]:
    """Decided moves of one knob each, with the value they started from filled in where the diff lacks it."""
    moves: dict[str, list[Seen]] = {name: [] for name in current}
    for s in seen:
        if s.item.status not in DECIDED or len(s.new) != 1 or next(iter(s.new)) not in current:
            continue
        name = next(iter(s.new))
        if s.item.parent_candidate_id == incumbent_id:  # the incumbent's value is the one it moved from
            s = Seen(s.item, {**s.old, name: current[name][1]}, s.new)
        if name in s.old:
            moves[name].append(s)
    return moves


# ---------------------------------------------------------------------------------------- candidates


def _step_value(knob: Knob, value: Any, direction: int, step: float, log: bool) -> Any:
    """`value` moved by `step`, clamped and rounded to what the file can hold; ints move at least by one."""
    x = value * 2.0 ** (direction * step) if log else value + direction * step
    if knob.kind == "int":
        new = math.floor(x + 0.5)
        return int(clamp(knob, new if new != value else value + direction))
    return float(clamp(knob, round_sig(x)))


def _numeric_ladder(knob: Knob, value: Any, plan: Plan) -> Iterator[tuple[Any, int, int]]:
    """(value, direction, rung): the planned step both ways, then ever finer steps down to the resolution."""
    log = _is_log(knob, value)
    span = _span(knob, value, log)
    finest = LOG_FINEST if log else max(span * LINEAR_FINEST, 1.0 if knob.kind == "int" else 1e-12)
    step = max(min(plan.step, span), finest)
    rungs = int(math.log2(step / finest) + 0.01) + 1  # tolerant: steps are rounded to 4 significant digits
    for rung in range(rungs):  # each rung halves the step: ×2, ×√2, ×2^¼ ... for log knobs
        for direction in (plan.direction, -plan.direction):
            yield _step_value(knob, value, direction, step / 2**rung, log), direction, rung


def _choice_ladder(knob: Knob, value: Any, plan: Plan) -> Iterator[tuple[Any, int, int]]:
    """(value, direction, rung): the neighbouring choices first, the planned side before the other."""
    options = list(knob.choices)
    if value not in options:
        yield from ((option, 1, 0) for option in options)
        return
    at = options.index(value)
    for distance in range(1, len(options)):
        for direction in (plan.direction, -plan.direction):
            if 0 <= at + direction * distance < len(options):
                yield options[at + direction * distance], direction, distance - 1


def _ladder(knob: Knob, value: Any, plan: Plan) -> Iterator[tuple[Any, int, int]]:
    """The knob's candidate values in order of preference."""
    if knob.kind == "bool":
        return iter([(not value, plan.direction, 0)])
    if knob.kind == "choice":
        return _choice_ladder(knob, value, plan)
    return _numeric_ladder(knob, value, plan)


def _describe(knob: Knob, old: Any, new: Any) -> str:
    """The operation, in words: halve, ×1.41, +0.075, next choice, flip."""
    if knob.kind == "bool":
        return "flip"
    if knob.kind == "choice":
        shift = knob.choices.index(new) - knob.choices.index(old) if old in knob.choices else 0
        return {1: "next choice", -1: "previous choice"}.get(shift, f"{shift:+d} choices" if shift else "set")
    if _is_log(knob, old):
        ratio = new / old
        words = {2.0: "double", 0.5: "halve"}
        return words.get(round(ratio, 2), f"×{ratio:.3g}" if ratio > 1 else f"÷{1 / ratio:.3g}")
    return f"{new - old:+.3g}"


# ----------------------------------------------------------------------------------------- proposals


def _proposal(files: Mapping[str, str], knobs: Mapping[str, Knob], changes: dict[str, Any],
              rationale: str) -> Proposal:
    """The full new files with every change written in."""
    new = dict(files)
    for name, value in changes.items():
        new = write_knob(new, knobs[name], value)
    return Proposal(rationale=rationale, files=new, changes=changes)


def _near_miss_pairs(seen: list[Seen], incumbent_id: str,
                     knobs: Mapping[str, Knob]) -> list[tuple[Seen, Seen]]:
    """Pairs of the incumbent's best near-misses (rejected one-knob changes that helped a bit), best first."""
    best: dict[str, Seen] = {}
    for s in seen:
        if (s.item.parent_candidate_id == incumbent_id and s.item.status == "rejected" and len(s.new) == 1
                and set(s.new) <= set(knobs) and (s.item.effect or 0.0) > 0):
            name = next(iter(s.new))
            if name not in best or _gain(s) > _gain(best[name]):
                best[name] = s
    # A few knobs only: pairs grow quadratically, and weaker misses are mostly noise.
    top = sorted(best.values(), key=lambda s: -_gain(s))[:NEAR_MISS_KNOBS]
    return sorted(combinations(top, 2), key=lambda p: -(_gain(p[0]) + _gain(p[1])))


def _gain(s: Seen) -> float:
    """A near-miss's effect (> 0: only those that helped are near-misses)."""
    return s.item.effect or 0.0


def _combine(context: ProposalContext, current: Mapping[str, tuple[Knob, Any]], seen: list[Seen],
             taken: set[Key]) -> Proposal | None:
    """Two near-misses merged into one proposal, if a pair not yet tried exists."""
    knobs = {name: kv[0] for name, kv in current.items()}
    for a, b in _near_miss_pairs(seen, context.incumbent_id, knobs):
        changes = {**a.new, **b.new}
        if change_key(changes) in taken:
            continue
        parts = [", ".join(f"{n}: {show(current[n][1])} → {show(v)}" for n, v in s.new.items())
                 + f" (effect {s.item.effect:+.3g})" for s in (a, b)]
        rationale = f"{parts[0]} + {parts[1]} (combine two near-misses: each helped, neither significantly)"
        return _proposal(context.incumbent_files, knobs, changes, rationale)
    return None


def _order(current: Mapping[str, tuple[Knob, Any]], seen: list[Seen], plans: Mapping[str, Plan],
           incumbent_id: str) -> list[str]:
    """The knobs in the order to try them on the incumbent.

    Least tried on the incumbent first, a knob whose last step made things clearly worse counting one try
    less (its other way is promising); among those, knobs whose last move was accepted or rebounds first;
    then the domain's declared order, which lists the knobs most likely to pay off first. The seed still
    picks each knob's first direction.
    """
    tries = {name: 0 for name in current}
    for s in seen:
        if s.item.parent_candidate_id == incumbent_id:
            for name in set(s.new) & set(tries):
                tries[name] += 1
    rank = {name: i for i, name in enumerate(current)}
    return sorted(current, key=lambda n: (tries[n] - plans[n].rebound, not (plans[n].momentum or plans[n].rebound),
                                          rank[n]))


def _first_untried(knob: Knob, value: Any, plan: Plan, taken: set[Key]) -> tuple[Any, str] | None:
    """The first value on the knob's ladder that is new and not tried, and why it was chosen."""
    skipped = False  # whether a preferred value was passed over because it was tried (not merely clamped)
    for new, _direction, rung in _ladder(knob, value, plan):
        if new == value:
            continue
        if change_key({knob.name: new}) in taken:
            skipped = True
            continue
        if not skipped:
            return new, plan.why
        if rung == 0:
            return new, "the other way: the planned step was tried on this incumbent"
        if knob.kind == "choice":
            return new, "a farther choice: the nearer ones were tried on this incumbent"
        return new, "a finer step: the coarser ones were tried on this incumbent"
    return None


def _tested(context: ProposalContext) -> set[str]:
    """Candidates the campaign already measured: proposing one again would only be rejected as a duplicate."""
    return {h.candidate_id for h in context.history if h.candidate_id} | {
        h.parent_candidate_id for h in context.history}


class KnobProposer:
    """Adaptive coordinate search over the declared knobs, steered by the ledger's accepts and rejects."""

    name = "knob"

    def __init__(self, settings: ProposerConfig | None = None) -> None:
        self.settings = settings  # nothing to configure: the proposer is offline and deterministic by seed

    def propose(self, context: ProposalContext, sink: EventSink | None = None) -> Proposal | None:
        """The next knob change for the incumbent; None when every knob is exhausted at its finest step."""
        current = readable_knobs(context, self.name)
        knobs = {name: kv[0] for name, kv in current.items()}
        rng = random.Random(context.seed)
        seen, taken = parse_history(context, {k.name: k for k in context.knobs})
        tested = _tested(context)
        combined = _combine(context, current, seen, taken)
        if combined is not None and candidate_id(combined.files) not in tested:
            return combined
        moves = _moves_by_knob(seen, current, context.incumbent_id)
        delta = context.metric.delta
        plans = {name: _plan(knob, value, moves[name], rng, delta) for name, (knob, value) in current.items()}
        for name in _order(current, seen, plans, context.incumbent_id):
            knob, value = current[name]
            while (found := _first_untried(knob, value, plans[name], taken)) is not None:
                new, why = found
                rationale = f"{name}: {show(value)} → {show(new)} ({_describe(knob, value, new)}; {why})"
                proposal = _proposal(context.incumbent_files, knobs, {name: new}, rationale)
                if candidate_id(proposal.files) not in tested:
                    return proposal
                taken.add(change_key({name: new}))  # it would rebuild a candidate already tested (e.g. an undo)
        return None


# ------------------------------------------------------------------------------------------ baseline


def _random_value(knob: Knob, value: Any, rng: random.Random) -> Any:
    """A uniformly random valid value (log-uniform for log knobs; ×¼..×4 around the value when unbounded)."""
    if knob.kind == "bool":
        return not value
    if knob.kind == "choice":
        return rng.choice(knob.choices)
    if knob.low is None or knob.high is None:
        x = value * 2.0 ** rng.uniform(-2, 2) if value else rng.uniform(-1, 1)
    elif _is_log(knob, knob.high):
        x = math.exp(rng.uniform(math.log(knob.low), math.log(knob.high)))
    else:
        x = rng.uniform(knob.low, knob.high)
    if knob.kind == "int":
        return int(clamp(knob, math.floor(x + 0.5)))
    return float(clamp(knob, round_sig(x)))


class RandomKnobProposer:
    """The benchmark baseline: one random knob set to a uniformly random valid value."""

    name = "random"

    def __init__(self, settings: ProposerConfig | None = None) -> None:
        self.settings = settings

    def propose(self, context: ProposalContext, sink: EventSink | None = None) -> Proposal | None:
        """A random change not tried on the incumbent; None when a few hundred draws find none."""
        current = readable_knobs(context, self.name)
        knobs = {name: kv[0] for name, kv in current.items()}
        rng = random.Random(context.seed)
        _, taken = parse_history(context, {k.name: k for k in context.knobs})
        names = list(current)
        for _ in range(RANDOM_ATTEMPTS):
            knob, value = current[rng.choice(names)]
            new = _random_value(knob, value, rng)
            if new != value and change_key({knob.name: new}) not in taken:
                rationale = f"{knob.name}: {show(value)} → {show(new)} (uniform random draw; baseline)"
                return _proposal(context.incumbent_files, knobs, {knob.name: new}, rationale)
        return None
