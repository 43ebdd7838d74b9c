"""LORD++ levels across the stream of hypotheses."""

from __future__ import annotations

import pytest

from ledgerlab.core.alpha import gamma, lord_alpha, next_alpha
from ledgerlab.core.judge import JudgeSettings


def test_fixed_policy_is_constant() -> None:
    s = JudgeSettings(alpha=0.02)
    assert next_alpha(s, []) == next_alpha(s, [(0.02, True), (0.01, False)]) == 0.02


def test_gamma_is_positive_decreasing_and_sums_below_one() -> None:
    g = [gamma(j) for j in range(1, 20001)]
    assert all(x > 0 for x in g) and all(a >= b for a, b in zip(g[1:], g[2:]))
    assert sum(g) < 1.0


def test_levels_before_any_accept_sum_to_at_most_w0() -> None:
    s = JudgeSettings(alpha=0.05, alpha_policy="lord")
    past: list[tuple[float, bool]] = []
    total = 0.0
    for _ in range(5000):
        a = next_alpha(s, past)
        total += a
        past.append((a, False))
    assert total <= 0.05 / 2


def test_wealth_grows_after_an_accept() -> None:
    s = JudgeSettings(alpha=0.05, alpha_policy="lord")
    nulls = [(0.001, False)] * 9
    without = next_alpha(s, [*nulls, (0.001, False)])
    with_accept = next_alpha(s, [*nulls, (0.001, True)])
    assert with_accept > 10 * without
    # Right after the first accept the next level is γ_t·W0 + (α − W0)·γ_1.
    assert with_accept == pytest.approx(gamma(11) * 0.025 + 0.025 * gamma(1))
    # A second accept earns α·γ (not α − W0): more than the first.
    two = next_alpha(s, [(0.001, True), *nulls, (0.001, True)])
    assert two == pytest.approx(gamma(12) * 0.025 + 0.025 * gamma(11) + 0.05 * gamma(1))


def test_levels_are_a_pure_function_of_past() -> None:
    s = JudgeSettings(alpha=0.05, alpha_policy="lord")
    past = [(0.01, False), (0.003, True), (0.002, False)]
    assert next_alpha(s, past) == next_alpha(s, list(past)) == lord_alpha(0.05, [False, True, False])
