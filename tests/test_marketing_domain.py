"""The marketing domain end to end: A/B runs through the embedded service, failures as results, the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ledgerlab.core.knobs import write_knob
from ledgerlab.core.outcomes import run_event
from ledgerlab.core.protocols import Arm, Domain, RunRequest
from ledgerlab.domains.marketing.domain import MarketingDomain, srm_p_value
from ledgerlab.domains.marketing.variant import KNOBS_BY_NAME
from ledgerlab.errors import ConfigError
from ledgerlab.storage import events as ev

METRIC_KEYS = {"successes", "trials", "units", "revenue_per_visitor", "revenue_sum", "revenue_sumsq",
               "revenue_wsum", "revenue_wsumsq"}


@pytest.fixture(scope="module")
def domain() -> Iterator[MarketingDomain]:
    d = MarketingDomain(visitors_per_run=40_000)
    yield d
    d.close()


def _candidate(base: dict[str, str], **changes) -> dict[str, str]:
    files = base
    for name, value in changes.items():
        files = write_knob(files, KNOBS_BY_NAME[name], value)
    return files


def _request(files, control, seed: int = 1, **options) -> RunRequest:
    return RunRequest(run_id=f"run-{seed}", candidate_id="cand", files=files, control_files=control, seed=seed,
                      workdir=Path("."), options=options)


def test_domain_satisfies_the_protocol(domain: MarketingDomain) -> None:
    assert isinstance(domain, Domain)
    assert domain.design == "concurrent" and domain.budget_unit == "visitors"
    assert domain.metric.name == "conversion_rate" and domain.metric.kind == "proportion"
    assert domain.metric.direction == "maximize"
    assert "variant.toml" in domain.description


def test_run_is_an_ab_test_through_the_embedded_service(domain: MarketingDomain) -> None:
    base = domain.baseline()
    better = _candidate(base, free_shipping=True, price=35.0, discount_pct=20, form_fields=2)
    result = domain.run(_request(better, base, seed=3))
    assert result.status == "finished", result.error
    assert METRIC_KEYS <= set(result.metrics) and METRIC_KEYS <= set(result.control_metrics)
    assert result.metrics["units"] == 40_000
    assert result.metrics["trials"] + result.control_metrics["trials"] == 40_000
    assert result.value == result.metrics["successes"] / result.metrics["trials"]
    assert result.control_value == result.control_metrics["successes"] / result.control_metrics["trials"]
    assert 0.02 < result.control_value < 0.07
    assert result.value > result.control_value  # +~20%: many standard errors at 20,000 visitors an arm
    assert domain.environment()["market_url"].startswith("http://127.0.0.1:")
    # Same seed, same run; the traffic window and split come from the seed.
    assert domain.run(_request(better, base, seed=3)).metrics == result.metrics
    assert domain.run(_request(better, base, seed=4)).metrics != result.metrics


def test_concurrent_runs_share_one_embedded_service() -> None:
    from concurrent.futures import ThreadPoolExecutor

    domain = MarketingDomain(visitors_per_run=5_000)
    base = domain.baseline()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda seed: domain.run(_request(base, base, seed=seed)), range(16)))
    assert [r.status for r in results] == ["finished"] * 16
    assert len(domain._servers) == 1
    domain.close()


def test_missing_control_means_the_baseline(domain: MarketingDomain) -> None:
    base = domain.baseline()
    request = RunRequest(run_id="r", candidate_id="cand", files=base, seed=2, workdir=Path("."))
    assert domain.run(request).control_metrics == domain.run(_request(base, base, seed=2)).control_metrics


def test_a_mismatch_by_chance_is_void_once_and_its_retry_gets_new_traffic(domain: MarketingDomain) -> None:
    # Seed 166 is the first of 0, 1, 2… whose A/B window (this request's ids) splits 12,231 vs 12,769 visitors:
    # p < 0.001 by chance alone, as one window in a thousand does. The loop's retry is attempt 2.
    base = domain.baseline()
    request = _request(base, base, seed=166, factorial=False, candidates_per_run=1, visitors_per_run=25_000)
    void = domain.run(request)
    assert void.status == "invalid" and void.retryable and "12,231 vs treatment 12,769" in void.error
    again = domain.run(request.model_copy(update={"attempt": 2}))
    assert again.status == "finished" and again.metrics["srm_p_value"] >= 0.001
    assert again.metrics["trials"] != void.metrics["trials"]  # other visitors, not the same window replayed
    failed = run_event(request.run_id, void)  # the void window's visitors still count in the visitor budget
    assert isinstance(failed, ev.RunFailed) and failed.retryable and failed.units == void.metrics["units"] > 0
    for bogus in (True, -5, float("nan"), "25000"):  # not a count of visitors: the run counts none
        odd = void.model_copy(update={"metrics": {**void.metrics, "units": bogus}})
        assert run_event(request.run_id, odd).units == 0.0  # type: ignore[union-attr]


def test_sample_ratio_mismatch_invalidates_the_run(domain: MarketingDomain) -> None:
    base = domain.baseline()
    result = domain.run(_request(base, base, seed=5, srm_fault=0.05))
    assert result.status == "invalid" and result.retryable  # the split broke, not the candidate
    assert "sample ratio mismatch" in result.error
    assert result.metrics["srm_p_value"] < 0.001
    assert not domain.run(_request(base, base, seed=5)).retryable
    assert srm_p_value([5000, 5030], [0.5, 0.5]) > 0.5
    assert srm_p_value([5000, 5500], [0.5, 0.5]) < 0.001
    assert srm_p_value([7500, 2500], [3, 1]) == pytest.approx(1.0)


def test_invalid_candidate_and_bad_options_become_crashed_runs(domain: MarketingDomain) -> None:
    base = domain.baseline()
    bad = {"variant.toml": base["variant.toml"].replace("form_fields = 6", "form_fields = 99")}
    result = domain.run(_request(bad, base))
    assert result.status == "crashed" and "form_fields" in result.error
    result = domain.run(_request(base, base, visitors_per_runn=5))
    assert result.status == "crashed" and "unknown option" in result.error


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        MarketingDomain(visitors=10)
    for bad in ({"visitors_per_run": 1}, {"visitors_per_run": 2.5}, {"market_url": "ftp://x"},
                {"null_market": "yes"}, {"timeout_s": 0}, {"retries": -1}, {"market_seed": "seven"},
                {"candidates_per_run": 0}, {"candidates_per_run": 9}, {"candidates_per_run": "3"}):
        with pytest.raises(ConfigError):
            MarketingDomain(**bad)


def test_unreachable_market_is_a_crashed_run_not_an_exception() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="boom")

    domain = MarketingDomain(market_url="http://market.invalid", retries=2,
                             transport=httpx.MockTransport(broken))
    base = domain.baseline()
    result = domain.run(_request(base, base))
    assert result.status == "crashed"
    assert "after 3 attempts" in result.error and "HTTP 500" in result.error
    domain.close()


def test_a_market_that_hangs_gives_a_crashed_run() -> None:
    listener = socket.socket()  # accepts connections (the backlog) but never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        domain = MarketingDomain(market_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.2,
                                 retries=1)
        base = domain.baseline()
        result = domain.run(_request(base, base))
        assert result.status == "crashed" and "timed out" in result.error
        domain.close()
    finally:
        listener.close()


def test_null_market_option_and_a_remote_market(domain: MarketingDomain) -> None:
    null = MarketingDomain(null_market=True, market_seed=3, visitors_per_run=2_000)
    try:
        base = null.baseline()
        assert null.run(_request(_candidate(base, price=99.0), base)).status == "finished"
        remote = MarketingDomain(market_url=null.environment()["market_url"], visitors_per_run=2_000)
        assert remote.environment()["market"] == "remote"
        assert remote.run(_request(base, base)).status == "finished"
        remote.close()
    finally:
        null.close()


def test_close_stops_the_embedded_service() -> None:
    domain = MarketingDomain(visitors_per_run=1_000)
    base = domain.baseline()
    assert domain.run(_request(base, base)).status == "finished"
    url = domain.environment()["market_url"]
    domain.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=1)


def test_running_the_domain_never_imports_torch() -> None:
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from ledgerlab.core.protocols import RunRequest
        from ledgerlab.domains.marketing.domain import MarketingDomain
        d = MarketingDomain(visitors_per_run=1000)
        b = d.baseline()
        r = d.run(RunRequest(run_id="r", candidate_id="c", files=b, control_files=b, seed=1, workdir=Path(".")))
        d.close()
        assert r.status == "finished", r
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------------ the CLI


def _serve_command() -> list[str]:
    # Through the main app once `marketing` is registered there; the sub-app's own entry point until then.
    try:
        from ledgerlab.cli.main import app

        registered = any(group.name == "marketing" for group in app.registered_groups)
    except ImportError:  # the main app is assembled by other modules that may not exist yet
        registered = False
    if registered:
        return [sys.executable, "-c", "from ledgerlab.cli.main import main; main()", "marketing", "serve"]
    return [sys.executable, "-m", "ledgerlab.cli.marketing", "serve"]


def test_marketing_serve_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([*_serve_command(), "--port", str(port), "--seed", "7", "--null"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        health = _wait_for(f"http://127.0.0.1:{port}/health", process)
        assert health == {"status": "ok", "seed": 7, "null": True}
        domain = MarketingDomain(market_url=f"http://127.0.0.1:{port}", visitors_per_run=2_000)
        base = domain.baseline()
        assert domain.run(_request(base, base)).status == "finished"
        domain.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_help() -> None:
    from ledgerlab.cli.marketing import marketing_app

    result = CliRunner().invoke(marketing_app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--null" in result.output


def _wait_for(url: str, process: subprocess.Popen, timeout_s: float = 180.0) -> dict:  # a condition, not a clock
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode()}")
        try:
            return httpx.get(url, timeout=1).json()
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def test_each_ab_test_gets_its_own_traffic(domain: MarketingDomain) -> None:
    """Hypotheses tested on the same replicate seed must not replay the same visitors (shared errors)."""
    base = domain.baseline()
    other = base["variant.toml"].replace("free_shipping = false", "free_shipping = true")
    assert other != base["variant.toml"]
    first = domain.run(_request(base, base, seed=3))
    second = domain.run(RunRequest(run_id="r2", candidate_id="other", files={"variant.toml": other},
                                   control_files=base, seed=3, workdir=Path(".")))
    assert first.control_metrics["successes"] != second.control_metrics["successes"]
    assert domain.run(_request(base, base, seed=3)).control_metrics == first.control_metrics  # reproducible


def test_an_ab_n_run_tests_several_candidates_against_one_control() -> None:
    domain = MarketingDomain(visitors_per_run=30_000, candidates_per_run=3, factorial=False)
    base = domain.baseline()
    a, b, c = (_candidate(base, free_shipping=True), _candidate(base, form_fields=2), _candidate(base, price=35.0))
    request = RunRequest(run_id="r-1", candidate_id="a", files=a, control_files=base, seed=1, workdir=Path("."),
                         arms=(Arm(run_id="r-2", candidate_id="b", files=b, seed=0),
                               Arm(run_id="r-3", candidate_id="c", files=c, seed=2)))
    try:
        result = domain.run(request)
        assert result.status == "finished", result.error
        assert set(result.arms) == {"r-2", "r-3"}
        arms = [result, *result.arms.values()]
        control = result.control_metrics["trials"]
        # (3 + 1) / 2 A/B runs' visitors, each counted once in the budget; the control √3 times an arm
        assert sum(r.metrics["units"] for r in arms) == 60_000 == control + sum(r.metrics["trials"] for r in arms)
        assert all(r.control_metrics == result.control_metrics for r in arms)
        assert all(control / r.metrics["trials"] == pytest.approx(3 ** 0.5, rel=0.05) for r in arms)
        assert len({r.metrics["successes"] for r in arms}) == 3
        # Fewer candidates than the campaign allows: the same visitors per arm, the same ratio.
        two = domain.run(request.model_copy(update={"arms": request.arms[:1]}))
        assert two.status == "finished" and set(two.arms) == {"r-2"}
        assert two.control_metrics["trials"] / two.metrics["trials"] == pytest.approx(3 ** 0.5, rel=0.05)
        assert two.metrics["trials"] == pytest.approx(result.metrics["trials"], rel=0.05)
        # A sample-ratio mismatch over the four arms invalidates every candidate's run.
        srm = domain.run(request.model_copy(update={"options": {"srm_fault": 0.05}}))
        assert srm.status == "invalid" and "sample ratio mismatch" in srm.error
        assert [(r.status, r.retryable) for r in srm.arms.values()] == [("invalid", True)] * 2
        # A broken variant in a further arm crashes the run (the loop gives every arm that failure).
        bad = {"variant.toml": base["variant.toml"].replace("form_fields = 6", "form_fields = 99")}
        broken = request.model_copy(update={"arms": (request.arms[0].model_copy(update={"files": bad}),)})
        crashed = domain.run(broken)
        assert crashed.status == "crashed" and "form_fields" in crashed.error and not crashed.arms
    finally:
        domain.close()


def test_factorial_design_groups_changes_of_one_lever_into_a_factor() -> None:
    from ledgerlab.domains.marketing import factorial

    base = {"price": 49.0, "free_shipping": False, "form_fields": 6}
    single = factorial.design(base, [{**base, "price": 39.0}, {**base, "free_shipping": True},
                                     {**base, "form_fields": 2}])
    assert single.factors == ((0,), (1,), (2,)) and len(single.cells) == 8
    assert {tuple(sorted(factorial.changes(base, c.variant))) for c in single.cells} == {
        (), ("price",), ("free_shipping",), ("form_fields",), ("free_shipping", "price"),
        ("form_fields", "price"), ("form_fields", "free_shipping"), ("form_fields", "free_shipping", "price")}
    shared = factorial.design(base, [{**base, "price": 39.0}, {**base, "free_shipping": True},
                                     {**base, "price": 45.0, "form_fields": 2}])
    assert shared.factors == ((0, 2), (1,)) and len(shared.cells) == 6  # price set twice: one 3-level factor
    assert all(not (c.variant["price"] == 39.0 and c.variant["form_fields"] == 2) for c in shared.cells)
    arms = {c.name: {key: 1.0 for key in factorial.COUNTS} for c in shared.cells}
    on, off = factorial.split(arms, shared, 2)
    assert on["visitors"] == off["visitors"] == 2  # its level and the factor's off level, over the other factor


def test_a_factorial_run_compares_each_change_on_all_the_visitors() -> None:
    domain = MarketingDomain(visitors_per_run=60_000, candidates_per_run=3, factorial=True)
    base = domain.baseline()
    strong = _candidate(base, free_shipping=True, discount_pct=20)
    request = RunRequest(run_id="r-1", candidate_id="a", files=strong, control_files=base, seed=1,
                         workdir=Path("."), arms=(Arm(run_id="r-2", candidate_id="b", files=_candidate(
                             base, cta_color="green"), seed=0), Arm(run_id="r-3", candidate_id="c", files=_candidate(
                             base, form_fields=2), seed=2)))
    try:
        result = domain.run(request)
        assert result.status == "finished", result.error
        runs = [result, *result.arms.values()]
        assert set(result.arms) == {"r-2", "r-3"}
        assert sum(r.metrics["units"] for r in runs) == 60_000
        for r in runs:  # every change on for about half the visitors, off for the other half
            assert r.metrics["trials"] + r.control_metrics["trials"] == 60_000
            assert r.metrics["trials"] == pytest.approx(30_000, rel=0.03)
        assert result.value > result.control_value  # free shipping and 20% off: +20% or so
        # One candidate alone: the even split of an A/B test.
        alone = domain.run(request.model_copy(update={"arms": ()}))
        assert alone.metrics["trials"] == pytest.approx(alone.control_metrics["trials"], rel=0.05)
        assert alone.metrics["trials"] + alone.control_metrics["trials"] == 60_000
    finally:
        domain.close()


def test_a_null_change_in_factorial_runs_is_accepted_at_most_alpha_of_the_time() -> None:
    """A/A market (no lever matters): each change's on/off comparison is a valid test (300 runs, 900 tests)."""
    from scipy.stats import binomtest

    from ledgerlab.core.stats import proportion_test

    domain = MarketingDomain(visitors_per_run=4_000, candidates_per_run=3, factorial=True, null_market=True)
    base = domain.baseline()
    files = [_candidate(base, **change) for change in ({"price": 39.0}, {"free_shipping": True},
                                                       {"form_fields": 2})]
    accepted = tests = 0
    try:
        for seed in range(300):
            request = RunRequest(run_id="r-0", candidate_id="a", files=files[0], control_files=base, seed=seed,
                                 workdir=Path("."), arms=tuple(Arm(run_id=f"r-{i}", candidate_id=f"c{i}",
                                                                   files=f, seed=seed) for i, f in
                                                               enumerate(files[1:], 1)))
            result = domain.run(request)
            for r in (result, *result.arms.values()):
                test = proportion_test(r.metrics["successes"], r.metrics["trials"], r.control_metrics["successes"],
                                       r.control_metrics["trials"], "maximize", 0.0)
                accepted, tests = accepted + (test.p_value <= 0.05), tests + 1
    finally:
        domain.close()
    assert tests == 900
    assert binomtest(accepted, tests).proportion_ci(0.99).low <= 0.05, accepted
