"""A seeded market simulator: visitors from segments through a week of seasonality, buying by a logistic model.

    market = Market.canonical()                      # or Market.seeded(7), Market.canonical(null=True)
    market.true_effects(variant)                     # hidden truth, for evaluation only
    market.run_experiment({"a": v1, "b": v2}, visitors=50_000, seed=1)   # in-process A/B test, no HTTP

Visitors differ by device (mobile/desktop), new vs returning and traffic source; traffic and conversion
follow the hour of the day and the day of the week. Order values are lognormal (heavy-tailed) times the
price paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ledgerlab.domains.marketing.truth import Truth, as_null, canonical_truth, draw_truth
from ledgerlab.domains.marketing.variant import Variant, as_variant, template_variant

WEEK = 168  # hours; hour 0 is Monday 00:00
WINSOR_CAP = 400.0  # dollars per visitor: caps the rare huge basket for a heavy-tail-aware test

# ------------------------------------------------------------------------------------------ segments

SOURCES = ("search", "social", "email", "direct", "ads")
SOURCE_MIX = np.array([0.35, 0.20, 0.10, 0.20, 0.15])
SOURCE_LOGIT = np.array([0.05, -0.45, 0.45, 0.20, -0.15])  # email readers buy, social scrollers browse
NEW_SHARE = 0.70
MOBILE_LOGIT, RETURNING_LOGIT = -0.35, 0.55
BASKET_MU, BASKET_SIGMA = -0.25, 1.0  # units per order: lognormal, mean about 1.3, long right tail
BASKET_RETURNING, BASKET_DESKTOP = 0.15, 0.10  # log-basket bonuses

# Segment cells: every (mobile, new, source) combination, in a fixed order.
_CELL_MOBILE = np.repeat([0.0, 1.0], 2 * len(SOURCES))
_CELL_NEW = np.tile(np.repeat([0.0, 1.0], len(SOURCES)), 2)
_CELL_SOURCE = np.tile(np.arange(len(SOURCES)), 4)

# ------------------------------------------------------------------------------------------ seasonality

_HOURS = np.arange(WEEK)
_HOD = _HOURS % 24
_WEEKEND = (_HOURS >= 120).astype(float)
TRAFFIC = (1.0 + 0.55 * np.cos(2 * np.pi * (_HOD - 20) / 24)) * (1.0 - 0.15 * _WEEKEND)  # peaks at 8 pm
TIME_LOGIT = 0.10 * np.cos(2 * np.pi * (_HOD - 21) / 24) - 0.06 * _WEEKEND  # evening buyers decide
MOBILE_SHARE = 0.55 + 0.10 * ((_HOD >= 18) | (_HOD < 7)) + 0.08 * _WEEKEND  # phones in the evening


@dataclass(frozen=True)
class ArmStats:
    """What an experiment observed in one arm (per-visitor revenue sums, zeros for non-buyers)."""

    visitors: int
    conversions: int
    revenue_sum: float
    revenue_sumsq: float
    revenue_wsum: float  # winsorized at the experiment's cap
    revenue_wsumsq: float


@dataclass(frozen=True)
class ExperimentResult:
    """An A/B test's outcome: the traffic window and every arm's counts."""

    arms: dict[str, ArmStats]
    split: dict[str, float]  # the intended share of each arm (for a sample-ratio check)
    visitors: int
    seed: int
    start_hour: int
    hours: int
    winsor_cap: float

    def to_dict(self) -> dict[str, Any]:
        return {"arms": {name: vars(stats) for name, stats in self.arms.items()}, "split": self.split,
                "visitors": self.visitors, "seed": self.seed, "start_hour": self.start_hour,
                "hours": self.hours, "winsor_cap": self.winsor_cap}


@dataclass(frozen=True)
class Market:
    """A market with hidden truth; A/B tests on it are reproducible given their seed."""

    truth: Truth
    visitors_per_hour: float = 2500.0  # mean traffic; sets how long an experiment's window is
    winsor_cap: float = WINSOR_CAP
    _intercept: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_intercept", _calibrate(self.truth))

    @classmethod
    def canonical(cls, null: bool = False, **kwargs: Any) -> Market:
        """The hand-designed market."""
        return cls(canonical_truth(null=null), **kwargs)

    @classmethod
    def seeded(cls, seed: int | None, null: bool = False, **kwargs: Any) -> Market:
        """The market drawn from `seed` (None: the canonical one)."""
        if seed is None:
            return cls.canonical(null=null, **kwargs)
        truth = draw_truth(seed)
        return cls(as_null(truth) if null else truth, **kwargs)

    # ------------------------------------------------------------------------------------ truth

    def true_effects(self, variant: Variant | Mapping[str, Any], start_hour: int = 0,
                     hours: int = WEEK) -> dict[str, float]:
        """Expected conversion rate and revenue per visitor over a window (default: a whole week)."""
        return _expected(self.truth, self._intercept, as_variant(variant), start_hour, hours)

    def true_effects_by_segment(self, variant: Variant | Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Weekly truth within each segment: mobile, desktop, new, returning and every traffic source."""
        v = as_variant(variant)
        masks = {"mobile": _CELL_MOBILE == 1, "desktop": _CELL_MOBILE == 0, "new": _CELL_NEW == 1,
                 "returning": _CELL_NEW == 0, **{src: _CELL_SOURCE == i for i, src in enumerate(SOURCES)}}
        return {name: _expected(self.truth, self._intercept, v, 0, WEEK, mask.astype(float))
                for name, mask in masks.items()}

    # ------------------------------------------------------------------------------------ experiments

    def run_experiment(self, arms: Mapping[str, Variant | Mapping[str, Any]], visitors: int, seed: int,
                       start_hour: int = 0, split: Mapping[str, float] | None = None,
                       drop: Mapping[str, float] | None = None) -> ExperimentResult:
        """Split `visitors` at random among `arms` in one traffic window and count what each arm did.

        `drop` ({arm: share}) deliberately loses that share of an arm's visitors: a sample-ratio fault.
        """
        variants = {name: as_variant(v) for name, v in arms.items()}
        names = list(variants)
        shares = _shares(names, split)
        if visitors < 1:
            raise ValueError("an experiment needs at least one visitor")
        rng = np.random.default_rng([seed, 0xAB])
        hours = _window(start_hour, visitors, self.visitors_per_hour)
        window = (start_hour + np.arange(hours)) % WEEK
        hour = rng.choice(window, size=visitors, p=_norm(TRAFFIC[window]))  # busy hours send more visitors
        mobile = (rng.random(visitors) < MOBILE_SHARE[hour]).astype(float)
        new = (rng.random(visitors) < NEW_SHARE).astype(float)
        source = rng.choice(len(SOURCES), size=visitors, p=SOURCE_MIX)
        arm = rng.choice(len(names), size=visitors, p=np.array([shares[n] for n in names]))
        # Drawn for every visitor whatever the arm: the same visitor stream for any set of variants.
        uniform = rng.random(visitors)
        basket = np.exp(_basket_mu(mobile, new) + BASKET_SIGMA * rng.standard_normal(visitors))
        lost = rng.random(visitors)
        stats = {}
        for index, name in enumerate(names):
            mine = arm == index
            if drop and drop.get(name):
                mine &= lost >= drop[name]
            v = variants[name]
            logit = _logit(self.truth, self._intercept, v, mobile[mine], new[mine], source[mine])
            prob = _sigmoid(logit + TIME_LOGIT[hour[mine]])
            bought = uniform[mine] < prob
            revenue = basket[mine][bought] * self.truth.revenue_price(v)
            capped = np.minimum(revenue, self.winsor_cap)
            stats[name] = ArmStats(
                visitors=int(mine.sum()), conversions=int(bought.sum()),
                revenue_sum=float(revenue.sum()), revenue_sumsq=float((revenue**2).sum()),
                revenue_wsum=float(capped.sum()), revenue_wsumsq=float((capped**2).sum()),
            )
        return ExperimentResult(arms=stats, split=shares, visitors=visitors, seed=seed,
                                start_hour=start_hour % WEEK, hours=hours, winsor_cap=self.winsor_cap)


# ------------------------------------------------------------------------------------------ helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _norm(x: np.ndarray) -> np.ndarray:
    return x / x.sum()


def _basket_mu(mobile: np.ndarray, new: np.ndarray) -> np.ndarray:
    return BASKET_MU + BASKET_RETURNING * (1 - new) + BASKET_DESKTOP * (1 - mobile)


def _cell_mix(hour_idx: np.ndarray) -> np.ndarray:
    """P(cell | hour) for each hour and segment cell: (hours, cells)."""
    p_mobile = MOBILE_SHARE[hour_idx][:, None]
    device = np.where(_CELL_MOBILE[None, :] == 1.0, p_mobile, 1.0 - p_mobile)
    visitor = np.where(_CELL_NEW == 1.0, NEW_SHARE, 1.0 - NEW_SHARE)
    return device * visitor[None, :] * SOURCE_MIX[_CELL_SOURCE][None, :]


def _window(start_hour: int, visitors: int, per_hour: float) -> int:
    """Whole hours from `start_hour` until the expected traffic reaches `visitors` (at least one)."""
    mean = TRAFFIC.mean()
    expected = np.cumsum(np.resize(np.roll(TRAFFIC, -(start_hour % WEEK)), WEEK * 60)) / mean * per_hour
    return min(len(expected), int(np.searchsorted(expected, visitors)) + 1)


def _shares(names: list[str], split: Mapping[str, float] | None) -> dict[str, float]:
    if len(names) < 1:
        raise ValueError("an experiment needs at least one arm")
    if split is None:
        return {name: 1.0 / len(names) for name in names}
    if set(split) != set(names) or any(w <= 0 for w in split.values()):
        raise ValueError("split must give a positive weight to every arm and name no other")
    total = sum(split.values())
    return {name: split[name] / total for name in names}


def _logit(truth: Truth, intercept: float, variant: Variant, mobile: np.ndarray, new: np.ndarray,
           source: np.ndarray) -> np.ndarray:
    """Purchase log-odds of visitors (or segment cells), before the time of day."""
    segment = intercept + MOBILE_LOGIT * mobile + RETURNING_LOGIT * (1 - new) + SOURCE_LOGIT[source]
    return segment + truth.shift(variant).on(mobile, new)


def _expected(truth: Truth, intercept: float, variant: Variant, start_hour: int, hours: int,
              cells: np.ndarray | None = None) -> dict[str, float]:
    """Exact traffic-weighted conversion rate and revenue per visitor over a window of hours (and cells)."""
    hour_idx = (start_hour + np.arange(hours)) % WEEK
    weight = TRAFFIC[hour_idx][:, None] * _cell_mix(hour_idx)  # (hours, cells)
    if cells is not None:
        weight = weight * cells[None, :]
    logit = _logit(truth, intercept, variant, _CELL_MOBILE, _CELL_NEW, _CELL_SOURCE)
    prob = _sigmoid(logit[None, :] + TIME_LOGIT[hour_idx][:, None])
    basket = np.exp(_basket_mu(_CELL_MOBILE, _CELL_NEW) + BASKET_SIGMA**2 / 2)
    total = weight.sum()
    rate = float((weight * prob).sum() / total)
    rpv = float((weight * prob * basket[None, :]).sum() / total) * truth.revenue_price(variant)
    return {"conversion_rate": rate, "revenue_per_visitor": rpv}


def _calibrate(truth: Truth) -> float:
    """The intercept at which the template converts at `truth.base_rate` over a week (bisection)."""
    template = template_variant()
    low, high = -10.0, 2.0
    for _ in range(50):
        mid = (low + high) / 2
        if _expected(truth, mid, template, 0, WEEK)["conversion_rate"] < truth.base_rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2
