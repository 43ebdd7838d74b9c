"""A factorial window: several candidates' changes tested at once, each visitor getting each change at random.

An A/B/n run shows every visitor one of n + 1 pages, so each candidate is compared on a share of the run's
visitors. A factorial run draws, for each visitor and independently, which candidates' changes the page
carries: with three one-lever changes, eight pages (2³ cells), every change on for half the visitors. A
candidate's comparison is "its change on" against "its change off", over *all* the run's visitors, so one
run of N visitors tests each of its candidates as precisely as an A/B run of N visitors tests one.

Candidates that set the same lever cannot both be on: they become the levels of one factor (off, the first
change, the second, ...), drawn uniformly, and each is compared with the factor's "off" level. Either way a
candidate's on and off groups are equally large in every run, so its runs pool without bias.

What is estimated is a change's effect averaged over the other changes being on or off at random. When
changes do not interact (levers add up in purchase log-odds, as in the simulated market, where the sign of
a change's effect then does not depend on the others) that has the sign of its effect on the incumbent
alone; the confirmation runs after an accept measure that effect itself, A/B against the replaced page.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COUNTS = ("visitors", "conversions", "revenue_sum", "revenue_sumsq", "revenue_wsum", "revenue_wsumsq")


@dataclass(frozen=True)
class Cell:
    """One page of the run: its market name, its levers, and which level of each factor it shows."""

    name: str
    variant: dict[str, Any]
    levels: tuple[int, ...]  # per factor: 0 = off, i = the factor's i-th candidate on


@dataclass(frozen=True)
class Design:
    """The factors (lists of candidate indices) and the cells of a factorial run."""

    factors: tuple[tuple[int, ...], ...]
    cells: tuple[Cell, ...]

    def where(self, candidate: int) -> tuple[int, int]:
        """(factor, level) of a candidate."""
        for f, members in enumerate(self.factors):
            if candidate in members:
                return f, members.index(candidate) + 1
        raise KeyError(candidate)


def changes(base: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """The levers `variant` sets differently from `base`."""
    return {k: v for k, v in variant.items() if base.get(k) != v}


def design(base: Mapping[str, Any], variants: Sequence[Mapping[str, Any]]) -> Design:
    """Group the candidates into factors (those touching a common lever share one) and list every cell."""
    deltas = [changes(base, v) for v in variants]
    factors: list[list[int]] = []
    for i, delta in enumerate(deltas):
        touching = [f for f in factors if any(set(deltas[j]) & set(delta) for j in f)]
        merged = [i] + [j for f in touching for j in f]
        factors = [f for f in factors if f not in touching] + [sorted(merged)]
    factors.sort(key=lambda f: f[0])
    cells = []
    for n, levels in enumerate(itertools.product(*(range(len(f) + 1) for f in factors))):
        page = dict(base)
        for members, level in zip(factors, levels):
            if level:
                page.update(deltas[members[level - 1]])
        cells.append(Cell(name=f"cell-{n}", variant=page, levels=tuple(levels)))
    return Design(factors=tuple(tuple(f) for f in factors), cells=tuple(cells))


def split(arms: Mapping[str, Mapping[str, Any]], d: Design, candidate: int) -> tuple[dict[str, float], dict[str, float]]:
    """A candidate's (on, off) counts summed over the cells: its change shown, and its factor off."""
    factor, level = d.where(candidate)
    on = _total(arms, [c for c in d.cells if c.levels[factor] == level])
    off = _total(arms, [c for c in d.cells if c.levels[factor] == 0])
    return on, off


def _total(arms: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell]) -> dict[str, float]:
    return {key: sum(float(arms[c.name][key]) for c in cells) for key in COUNTS}
