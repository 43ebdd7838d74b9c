"""The market's hidden ground truth: how each lever shifts the log-odds of a purchase, by segment.

Every lever contributes a Shift (all visitors, extra on mobile, extra for new visitors) in logit units; for
a 4% base rate a shift of +0.05 is about +5% relative. The canonical truth has a few levers that matter
(pricing, checkout friction, free shipping, reviews, the headline), many that barely do, some that help one
segment and hurt another, and two that do nothing (button colour, chat widget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ledgerlab.domains.marketing.variant import KNOBS, Variant

REFERENCE_PRICE = 49.0  # the template's price: price effects are relative to it
REFERENCE_FIELDS = 6  # the template's form length


@dataclass(frozen=True)
class Shift:
    """A change in purchase log-odds: for everyone, plus extras for mobile and for new visitors."""

    all: float = 0.0
    mobile: float = 0.0
    new: float = 0.0

    def __add__(self, other: Shift) -> Shift:
        return Shift(self.all + other.all, self.mobile + other.mobile, self.new + other.new)

    def scaled(self, factor: float) -> Shift:
        return Shift(self.all * factor, self.mobile * factor, self.new * factor)

    def on(self, is_mobile: np.ndarray, is_new: np.ndarray) -> np.ndarray:
        """The shift for each visitor (or segment cell)."""
        return self.all + self.mobile * is_mobile + self.new * is_new


ZERO = Shift()


@dataclass(frozen=True)
class Pricing:
    """How price and discount move conversion: elasticity, a low-price quality signal, discount framing."""

    elasticity: float = 0.17  # logit per log of the effective price (inelastic: cutting price loses revenue)
    quality_floor: float = 35.0  # below this list price, cheapness signals low quality
    quality_penalty: float = 0.45  # logit per log below the floor
    framing: float = 0.015  # a visible discount persuades beyond its arithmetic
    credible_pct: int = 20  # discounts above this look fake
    backfire: float = 0.012  # logit lost per percent above credible_pct

    def shift(self, price: float, discount_pct: int) -> Shift:
        effective = price * (1 - discount_pct / 100)
        logit = -self.elasticity * math.log(effective / REFERENCE_PRICE)
        logit -= self.quality_penalty * max(0.0, math.log(self.quality_floor / price))
        if discount_pct > 0:
            logit += self.framing - self.backfire * max(0, discount_pct - self.credible_pct)
        return Shift(all=logit)


@dataclass(frozen=True)
class Truth:
    """The hidden effects of every lever; `null` makes every lever (and price, for revenue) irrelevant."""

    base_rate: float = 0.04  # conversion of the template over a whole week
    choices: Mapping[str, Mapping[Any, Shift]] = field(default_factory=dict)
    flags: Mapping[str, Shift] = field(default_factory=dict)
    pricing: Pricing = field(default_factory=Pricing)
    form_field: Shift = Shift(all=-0.007, mobile=-0.010)  # per checkout field: forms hurt most on phones
    null: bool = False

    def shift(self, variant: Variant) -> Shift:
        """The total log-odds shift of `variant` relative to the template."""
        if self.null:
            return ZERO
        total = self.pricing.shift(variant.price, variant.discount_pct)
        total += self.form_field.scaled(variant.form_fields - REFERENCE_FIELDS)
        for name, table in self.choices.items():
            total += table.get(getattr(variant, name), ZERO)
        for name, effect in self.flags.items():
            if getattr(variant, name):
                total += effect
        return total

    def revenue_price(self, variant: Variant) -> float:
        """The unit price that scales order values (fixed in the null market: A/A means nothing matters)."""
        return REFERENCE_PRICE if self.null else variant.effective_price


# ----------------------------------------------------------------------------------- the canonical truth

_CANONICAL_CHOICES: dict[str, dict[Any, Shift]] = {
    "headline": {
        "Everything you need, delivered tomorrow": Shift(all=0.03),
        "Join 50,000 happy customers": Shift(all=0.015, new=0.02),
        "Save 20 minutes on every order": Shift(all=0.012),
        "Premium quality, fair prices": Shift(all=-0.01),
        "Last chance: shop before it is gone": Shift(all=-0.05, new=0.03),
    },
    "cta_text": {
        "Get started": Shift(all=0.01),
        "Add to cart": Shift(all=0.02),
        "Claim my offer": Shift(all=-0.015),
        "Learn more": Shift(all=-0.05),  # one more click before the cart
    },
    # Button colour: the folklore lever. Effects far below what any test can see.
    "cta_color": {"green": Shift(all=0.003), "orange": Shift(all=0.005), "red": Shift(all=-0.002),
                  "gray": Shift(all=-0.008)},
    "hero_image": {
        "lifestyle": Shift(all=0.015),
        "people": Shift(all=0.005, new=0.01),
        "illustration": Shift(all=-0.015),
        "video": Shift(all=0.035, mobile=-0.08),  # engages on desktop, slow to load on phones
    },
    "social_proof": {
        "reviews": Shift(all=0.015, new=0.03),  # new visitors need reassurance, returning ones do not
        "testimonials": Shift(all=0.008, new=0.012),
        "logos": ZERO,  # a B2B signal on a consumer page
        "press": Shift(all=0.005),
        "user_count": Shift(all=0.012),
    },
    "urgency_banner": {
        "countdown": Shift(all=-0.05, new=0.07),  # nudges newcomers, annoys regulars: about null overall
        "low_stock": Shift(all=0.012),
        "limited_offer": Shift(all=-0.008),
    },
    "page_length": {
        "short": Shift(all=-0.025, mobile=0.04),
        "long": Shift(all=0.025, mobile=-0.065),
    },
}

_CANONICAL_FLAGS: dict[str, Shift] = {
    "free_shipping": Shift(all=0.01, new=0.05),  # shipping surprises lose first-time buyers
    "trust_badges": Shift(all=0.012, mobile=-0.008, new=0.008),
    "guest_checkout": Shift(new=0.04),  # returning visitors already have accounts
    "chat_widget": ZERO,
    "exit_popup": Shift(all=-0.02, new=0.02),
}


def canonical_truth(null: bool = False) -> Truth:
    """The hand-designed market every default campaign runs against."""
    return Truth(choices=_CANONICAL_CHOICES, flags=_CANONICAL_FLAGS, null=null)


def draw_truth(seed: int, null: bool = False) -> Truth:
    """A random market near the canonical one: jittered effect sizes and a shuffled best option per lever.

    Cheap (no simulation), so a benchmark can build hundreds of distinct markets.
    """
    rng = np.random.default_rng([seed, 0x6D61726B])
    choices = {}
    for name, table in _CANONICAL_CHOICES.items():
        knob = next(k for k in KNOBS if k.name == name)
        options = [c for c in knob.choices if c != knob.choices[0]]  # the first choice is the template's
        effects = [table.get(option, ZERO) for option in options]
        order = rng.permutation(len(effects))
        choices[name] = {option: effects[i].scaled(_jitter(rng)) for option, i in zip(options, order)}
    flags = {name: effect.scaled(_jitter(rng)) for name, effect in _CANONICAL_FLAGS.items()}
    base = Pricing()
    pricing = Pricing(
        elasticity=base.elasticity * _jitter(rng),
        quality_floor=float(rng.uniform(29.0, 42.0)),
        quality_penalty=base.quality_penalty * _jitter(rng),
        framing=base.framing * _jitter(rng),
        credible_pct=int(rng.integers(10, 31)),
        backfire=base.backfire * _jitter(rng),
    )
    form_field = canonical_truth().form_field.scaled(_jitter(rng))
    return Truth(base_rate=float(rng.uniform(0.03, 0.05)), choices=choices, flags=flags, pricing=pricing,
                 form_field=form_field, null=null)


def _jitter(rng: np.random.Generator) -> float:
    return float(rng.lognormal(0.0, 0.3))


def as_null(truth: Truth) -> Truth:
    """The same market with every lever switched off (for A/A benchmarks)."""
    return replace(truth, null=True)
