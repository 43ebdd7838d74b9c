"""The market simulator: reproducible, faithful to its hidden truth, with segments, seasonality and a null mode."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ledgerlab.domains.marketing.market import WEEK, Market
from ledgerlab.domains.marketing.variant import KNOBS, template_variant

BASE = template_variant()
# A page that fixes the levers that matter (pricing, friction, shipping, reviews, headline).
GOOD = replace(BASE, headline="Everything you need, delivered tomorrow", price=35.0, discount_pct=20,
               free_shipping=True, social_proof="reviews", form_fields=2, guest_checkout=True)
BAD = replace(BASE, cta_text="Learn more", form_fields=12, price=99.0, discount_pct=50)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.canonical()


def _binomial_ok(conversions: int, visitors: int, p: float, z: float = 4.5) -> bool:
    return abs(conversions / visitors - p) < z * math.sqrt(p * (1 - p) / visitors)


def test_experiments_are_reproducible_from_their_seed(market: Market) -> None:
    one = market.run_experiment({"a": BASE, "b": GOOD}, visitors=20_000, seed=5, start_hour=30)
    two = market.run_experiment({"a": BASE, "b": GOOD}, visitors=20_000, seed=5, start_hour=30)
    other = market.run_experiment({"a": BASE, "b": GOOD}, visitors=20_000, seed=6, start_hour=30)
    assert one == two
    assert one.arms != other.arms
    assert sum(arm.visitors for arm in one.arms.values()) == 20_000


@pytest.mark.parametrize("variant", [BASE, GOOD, BAD], ids=["baseline", "good", "bad"])
def test_observed_rates_match_the_truth_of_their_window(market: Market, variant) -> None:
    result = market.run_experiment({"only": variant}, visitors=300_000, seed=11, start_hour=100)
    arm = result.arms["only"]
    truth = market.true_effects(variant, start_hour=result.start_hour, hours=result.hours)
    assert _binomial_ok(arm.conversions, arm.visitors, truth["conversion_rate"])
    # Revenue is heavy-tailed: compare with the sample's own standard error.
    mean = arm.revenue_sum / arm.visitors
    se = math.sqrt((arm.revenue_sumsq / arm.visitors - mean**2) / arm.visitors)
    assert abs(mean - truth["revenue_per_visitor"]) < 5 * se
    assert arm.revenue_wsum <= arm.revenue_sum and arm.revenue_wsumsq <= arm.revenue_sumsq


def test_a_week_long_experiment_matches_the_weekly_truth() -> None:
    market = Market.canonical(visitors_per_hour=200_000 / WEEK)
    result = market.run_experiment({"only": BASE}, visitors=200_000, seed=2)
    assert WEEK - 2 <= result.hours <= WEEK + 2
    arm = result.arms["only"]
    assert _binomial_ok(arm.conversions, arm.visitors, market.true_effects(BASE)["conversion_rate"])


def test_baseline_converts_at_a_realistic_rate_and_a_real_optimum_exists(market: Market) -> None:
    base = market.true_effects(BASE)
    assert base["conversion_rate"] == pytest.approx(0.04, abs=1e-6)
    best = _coordinate_ascent(market)
    lift = market.true_effects(best)["conversion_rate"] / base["conversion_rate"] - 1
    assert 0.20 <= lift <= 0.45
    assert market.true_effects(GOOD)["conversion_rate"] > base["conversion_rate"] * 1.25
    assert market.true_effects(BAD)["conversion_rate"] < base["conversion_rate"] * 0.8


def test_levers_help_hurt_or_do_nothing(market: Market) -> None:
    rate = lambda **change: market.true_effects(replace(BASE, **change))["conversion_rate"]  # noqa: E731
    base = rate()
    assert rate(free_shipping=True) > base * 1.03  # helps
    assert rate(cta_text="Learn more") < base * 0.97  # hurts
    assert rate(chat_widget=True) == pytest.approx(base, rel=1e-12)  # nothing
    for color in ("green", "orange", "red", "gray"):  # folklore: below anything a test can see
        assert rate(cta_color=color) == pytest.approx(base, rel=0.01)


def test_price_trades_conversion_for_revenue(market: Market) -> None:
    cheap, dear = market.true_effects(replace(BASE, price=39.0)), market.true_effects(replace(BASE, price=79.0))
    assert cheap["conversion_rate"] > dear["conversion_rate"]
    assert cheap["revenue_per_visitor"] < dear["revenue_per_visitor"]
    # Too cheap looks shoddy: conversion peaks at an interior price.
    assert market.true_effects(replace(BASE, price=19.0))["conversion_rate"] < cheap["conversion_rate"]


def test_segments_differ_and_levers_interact_with_them(market: Market) -> None:
    seg = market.true_effects_by_segment(BASE)
    assert seg["mobile"]["conversion_rate"] < seg["desktop"]["conversion_rate"]
    assert seg["new"]["conversion_rate"] < seg["returning"]["conversion_rate"]
    assert seg["social"]["conversion_rate"] < seg["search"]["conversion_rate"] < seg["email"]["conversion_rate"]

    def lift(segment: str, **change) -> float:
        after = market.true_effects_by_segment(replace(BASE, **change))[segment]["conversion_rate"]
        return after / seg[segment]["conversion_rate"] - 1

    assert lift("mobile", form_fields=10) < lift("desktop", form_fields=10) < 0  # long forms hurt phones most
    assert lift("new", free_shipping=True) > 2 * lift("returning", free_shipping=True) > 0
    assert lift("desktop", hero_image="video") > 0 > lift("mobile", hero_image="video")
    assert lift("new", urgency_banner="countdown") > 0 > lift("returning", urgency_banner="countdown")


def test_time_of_day_and_day_of_week_matter(market: Market) -> None:
    night = market.true_effects(BASE, start_hour=2, hours=3)["conversion_rate"]  # Monday 2-5 am
    evening = market.true_effects(BASE, start_hour=19, hours=3)["conversion_rate"]  # Monday 7-10 pm
    weekend = market.true_effects(BASE, start_hour=5 * 24 + 19, hours=3)["conversion_rate"]  # Saturday evening
    assert night < weekend < evening
    # Traffic is seasonal too: the same visitors take longer to arrive at night.
    night_run = market.run_experiment({"a": BASE}, visitors=5_000, seed=1, start_hour=2)
    evening_run = market.run_experiment({"a": BASE}, visitors=5_000, seed=1, start_hour=19)
    assert night_run.hours > evening_run.hours


def test_null_market_makes_every_lever_irrelevant() -> None:
    null = Market.canonical(null=True)
    base = null.true_effects(BASE)
    for variant in (GOOD, BAD):
        assert null.true_effects(variant) == pytest.approx(base, rel=1e-12)
    result = null.run_experiment({"a": BASE, "b": BAD}, visitors=100_000, seed=3)
    a, b = result.arms["a"], result.arms["b"]
    pooled = (a.conversions + b.conversions) / (a.visitors + b.visitors)
    z = (a.conversions / a.visitors - b.conversions / b.visitors) / math.sqrt(
        pooled * (1 - pooled) * (1 / a.visitors + 1 / b.visitors))
    assert abs(z) < 4


def test_seeded_markets_are_cheap_distinct_and_realistic() -> None:
    markets = [Market.seeded(seed) for seed in range(20)]
    rates = [m.true_effects(BASE)["conversion_rate"] for m in markets]
    assert all(0.03 <= r <= 0.05 for r in rates)
    best_headlines = {max(KNOBS[0].choices, key=lambda h: m.true_effects(replace(BASE, headline=h))
                          ["conversion_rate"]) for m in markets}
    assert len(best_headlines) > 1  # which headline wins depends on the market
    assert Market.seeded(3).truth == Market.seeded(3).truth
    assert Market.seeded(None).truth == Market.canonical().truth


def test_sample_ratio_fault_drops_one_arms_visitors(market: Market) -> None:
    result = market.run_experiment({"a": BASE, "b": BASE}, visitors=40_000, seed=4, drop={"b": 0.1})
    assert result.arms["b"].visitors < 0.93 * result.arms["a"].visitors
    assert result.split == {"a": 0.5, "b": 0.5}


def test_uneven_split_and_bad_arguments(market: Market) -> None:
    result = market.run_experiment({"a": BASE, "b": BASE}, visitors=40_000, seed=4, split={"a": 3, "b": 1})
    assert result.split == {"a": 0.75, "b": 0.25}
    assert abs(result.arms["a"].visitors / 40_000 - 0.75) < 0.01
    with pytest.raises(ValueError):
        market.run_experiment({"a": BASE}, visitors=100, seed=1, split={"z": 1.0})
    with pytest.raises(ValueError):
        market.run_experiment({"a": BASE}, visitors=0, seed=1)


def _coordinate_ascent(market: Market):
    grids = {k.name: (list(k.choices) if k.kind in ("choice", "bool") else
                      list(np.linspace(k.low, k.high, 17)) if k.kind == "float" else
                      list(range(int(k.low), int(k.high) + 1))) for k in KNOBS}
    best = BASE
    for _ in range(2):
        for name, values in grids.items():
            pick = max(values, key=lambda x: market.true_effects(replace(best, **{name: x}))["conversion_rate"])
            best = replace(best, **{name: pick})
    return best


def test_markets_pickle_for_process_pools(market: Market) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(market))
    assert copy.run_experiment({"a": GOOD}, visitors=1_000, seed=1) == market.run_experiment(
        {"a": GOOD}, visitors=1_000, seed=1)
