"""The judge's interface and decisions on hand-made evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ledgerlab.core.judge import Evidence, JudgeSettings, make_judge
from ledgerlab.core.protocols import MetricSpec

LOSS = MetricSpec(name="loss", direction="minimize")
ACC = MetricSpec(name="acc", direction="maximize", kind="proportion")
HIST = tuple((0.1 * ((i * 7) % 5 - 2), 0.1 * ((i * 3) % 5 - 2), 0.05 * (i % 3 - 1)) for i in range(15))


def ev(pairs: tuple[tuple[float, float], ...], **kw: object) -> Evidence:
    return Evidence(metric=LOSS, design="independent", pairs=pairs, **kw)  # type: ignore[arg-type]


def test_settings_validate() -> None:
    with pytest.raises(ValidationError):
        JudgeSettings(looks=(3, 2))
    with pytest.raises(ValidationError):
        JudgeSettings(alpha=0.0)
    with pytest.raises(ValidationError):
        JudgeSettings(kind="bayes")  # type: ignore[arg-type]
    assert JudgeSettings().looks == (1, 2, 3, 4, 6, 8)


def test_first_look_without_history_asks_for_more() -> None:
    j = make_judge(JudgeSettings())
    assert j.first_n() == 1
    r = j.judge(ev(((1.0, 2.0),)), 0.01)
    assert r.decision == "more" and r.need == 2 and r.look == 1


def test_no_variance_and_worse_is_futile() -> None:
    r = make_judge(JudgeSettings()).judge(ev(((2.0, 1.0),)), 0.01)
    assert r.decision == "reject" and "no variance" in r.reason


def test_futility_rejects_a_bad_first_run() -> None:
    r = make_judge(JudgeSettings()).judge(ev(((1.3, 1.0),), history_diffs=HIST), 0.01)
    assert r.decision == "reject" and r.look == 1 and "futility" in r.reason
    assert r.effect == pytest.approx(-0.3) and r.p_value is not None and r.p_value > 0.1


def test_promising_then_accept_with_interval_above_delta() -> None:
    # binding levels, accepts from the first look (accept_from=1: the levels of every look are checked)
    j = make_judge(JudgeSettings(looks=(1, 3, 6), futility_p=0.2, futility_min_df=0, accept_from=1))
    r1 = j.judge(ev(((0.8, 1.0),), history_diffs=HIST), 0.01)
    assert r1.decision == "more" and r1.need == 3
    pairs = ((0.8, 1.0), (0.6, 1.0), (0.7, 1.0))
    r2 = j.judge(ev(pairs, history_diffs=HIST), 0.01)
    assert r2.decision == "accept" and r2.look == 2
    assert r2.ci_low is not None and r2.ci_low > 0 and r2.ci_level == pytest.approx(1 - 2 * 0.00428, abs=1e-4)
    assert r2.alpha_spent == pytest.approx(0.01 * 3 / 6)
    assert "accepted" in r2.reason and r2.n_candidate == 3


def test_default_futility_is_not_binding() -> None:
    from ledgerlab.core import stats

    free = stats.sequential_levels(0.01, (1, 2), None)[1]
    bound = stats.sequential_levels(0.01, (1, 2), stats.futility_levels(0.2, (1, 2)))[1]
    assert bound > free * 1.01  # binding credit would loosen the last look
    pairs = ((0.8, 1.0), (0.9, 1.0))
    for settings, level in ((JudgeSettings(looks=(1, 2), accept_from=1), free),
                            (JudgeSettings(looks=(1, 2), futility_min_df=0, accept_from=1), bound)):
        r = make_judge(settings).judge(ev(pairs, history_diffs=HIST), 0.01)
        assert r.look == 2 and r.ci_level == pytest.approx(1 - 2 * level, rel=1e-12)


def test_delta_override_blocks_small_improvements() -> None:
    pairs = ((0.9, 1.0), (0.6, 1.0), (0.7, 1.0))
    r = make_judge(JudgeSettings(delta=0.5)).judge(ev(pairs, history_diffs=HIST), 0.01)
    assert r.decision == "reject"


def test_last_look_rejects_and_never_asks_beyond_it() -> None:
    pairs = tuple((1.0 - 0.01 * (i % 2), 1.0) for i in range(8))
    r = make_judge(JudgeSettings()).judge(ev(pairs, history_diffs=HIST), 0.01)
    assert r.decision == "reject" and r.look == 6 and r.need == 0


def test_fixed_judge_waits_for_n_then_tests_once() -> None:
    j = make_judge(JudgeSettings(kind="fixed", fixed_n=5))
    assert j.name == "fixed" and j.first_n() == 5
    assert j.judge(ev(((0.9, 1.0),)), 0.05).need == 5
    pairs = ((0.5, 1.0), (0.6, 1.0), (0.4, 1.1), (0.5, 0.9), (0.55, 1.0))
    r = j.judge(ev(pairs), 0.05)
    assert r.decision == "accept" and r.test == "paired-t" and r.alpha_spent == 0.05


def test_greedy_keeps_any_better_run() -> None:
    j = make_judge(JudgeSettings(kind="greedy"))
    assert j.judge(ev(((0.999, 1.0),)), 0.01).decision == "accept"
    assert j.judge(ev(((1.001, 1.0),)), 0.01).decision == "reject"
    r = j.judge(Evidence(metric=LOSS, design="independent", candidate_only=(1.0,), incumbent_only=(1.2, 0.9)),
                0.01)
    assert r.decision == "accept" and r.effect == pytest.approx(0.05)


def test_unpaired_uses_welch() -> None:
    e = Evidence(metric=LOSS, design="independent", candidate_only=(0.5, 0.6, 0.55), incumbent_only=(1.0, 1.1, 0.9))
    r = make_judge(JudgeSettings(looks=(3,))).judge(e, 0.01)
    assert r.test == "welch" and r.decision == "accept"


def test_concurrent_counts_use_z_or_exact() -> None:
    j = make_judge(JudgeSettings(looks=(1, 2)))
    big = Evidence(metric=ACC, design="concurrent", counts=((1300, 10000, 1000, 10000),))
    r = j.judge(big, 0.01)
    assert r.test == "two-proportion z" and r.decision == "accept" and r.n_candidate == 1
    small = Evidence(metric=ACC, design="concurrent", counts=((3, 20, 2, 20),))
    r = j.judge(small, 0.01)
    assert r.test == "fisher exact" and r.decision == "reject"  # p ≈ 0.5 > futility_p


@pytest.mark.parametrize("counts", [((15, 20, 10, 20),), ((0, 100, 1, 1000),), ((1300, 10000, 1000, 10000),),
                                    ((30, 400, 12, 400), (28, 400, 15, 400)), ((5, 2000, 0, 2000),)])
@pytest.mark.parametrize("delta", [0.0, -0.002, 0.01])
def test_proportion_interval_clears_delta_exactly_when_accepted(counts: tuple, delta: float) -> None:
    for alpha in (0.01, 0.05, 0.2):
        for metric in (ACC, ACC.model_copy(update={"direction": "minimize"})):
            j = make_judge(JudgeSettings(looks=(len(counts),), delta=delta, min_expected=0.0))  # one look
            r = j.judge(Evidence(metric=metric, design="concurrent", counts=counts), alpha)
            assert r.ci_low is not None and r.decision in ("accept", "reject")
            assert (r.decision == "accept") == (r.ci_low > delta), (metric.direction, alpha, r)


def test_proportions_without_trials_or_successes_never_accept() -> None:
    j = make_judge(JudgeSettings(looks=(1, 2)))
    empty = Evidence(metric=ACC, design="concurrent", counts=((0, 0, 0, 0),))
    r = j.judge(empty, 0.05)
    assert r.decision == "more" and r.p_value is None and r.effect is None
    r = j.judge(empty.model_copy(update={"counts": ((0, 0, 0, 0),) * 2}), 0.05)
    assert r.decision == "reject" and "no variance" in r.reason
    none = Evidence(metric=ACC, design="concurrent", counts=((0, 500, 0, 500),))
    for delta, p in ((0.0, 1.0), (0.01, 0.9)):  # nothing favours the candidate: rejected at the first look
        r = make_judge(JudgeSettings(looks=(1, 2), delta=delta, min_expected=0.0)).judge(none, 0.05)
        assert r.decision == "reject" and r.p_value is not None and r.p_value >= p
    # ... but it is evidence that the candidate is not worse by more than 1 point (non-inferiority).
    r = make_judge(JudgeSettings(looks=(1, 2), delta=-0.01)).judge(none, 0.05)
    assert r.decision == "accept" and r.ci_low is not None and r.ci_low > -0.01


def test_tied_unpaired_runs_are_never_accepted() -> None:
    # Welch's t on runs with no spread used to be infinite (p = 0: accepted on three identical values).
    e = Evidence(metric=LOSS, design="independent", candidate_only=(0.5,) * 3, incumbent_only=(1.0,) * 3)
    r = make_judge(JudgeSettings(looks=(3,))).judge(e, 0.01)
    assert r.decision == "reject" and r.p_value is None and r.effect == pytest.approx(0.5)


def test_judgement_is_frozen_and_serializable() -> None:
    r = make_judge(JudgeSettings()).judge(ev(((1.0, 2.0),)), 0.01)
    with pytest.raises(ValidationError):
        r.decision = "accept"  # type: ignore[misc]
    assert type(r).model_validate_json(r.model_dump_json()) == r


def test_an_unset_alpha_takes_the_domain_metrics_level() -> None:
    from ledgerlab.core.campaign import judge_settings
    from ledgerlab.core.config import CampaignConfig

    ab = MetricSpec(name="conversion", direction="maximize", kind="proportion", alpha=0.05)
    assert judge_settings(CampaignConfig(), ab).alpha == 0.05
    assert judge_settings(CampaignConfig(), MetricSpec(name="loss", direction="minimize")).alpha == 0.01
    assert judge_settings(CampaignConfig(judge={"alpha": 0.02}), ab).alpha == 0.02  # the [judge] table wins


def test_greedy_takes_autoresearchs_loop_unless_a_key_is_set(tmp_path: Path) -> None:
    from ledgerlab.core.campaign import judge_settings
    from ledgerlab.core.config import CampaignConfig, load_config

    greedy = judge_settings(CampaignConfig(judge={"kind": "greedy"}))
    assert (greedy.calibration_runs, greedy.confirm_runs, greedy.guardrails) == (1, 0, False)
    chosen = judge_settings(CampaignConfig(judge={"kind": "greedy", "confirm_runs": 2, "guardrails": True}))
    assert (chosen.calibration_runs, chosen.confirm_runs, chosen.guardrails) == (1, 2, True)
    # A value from ledgerlab.toml survives the command line's overrides (`--judge greedy`).
    toml = tmp_path / "ledgerlab.toml"
    toml.write_text("[judge]\nconfirm_runs = 3\n", encoding="utf-8")
    merged = load_config(toml).merged({"judge.kind": "greedy", "budgets.max_runs": None})
    assert judge_settings(merged).confirm_runs == 3 and judge_settings(merged).calibration_runs == 1
    assert judge_settings(CampaignConfig().merged({"judge.kind": "greedy"})).confirm_runs == 0
