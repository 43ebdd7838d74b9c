"""The domain contract: one pytest suite that checks a domain plug-in does what core/protocols.py's `Domain` and
core/domain_base.py's `DomainBase` document. Run it on your own domain:

    # tests/test_pricing_contract.py
    import pytest
    from ledgerlab.testing.domain_contract import DomainContract

    class TestPricingContract(DomainContract):
        @pytest.fixture
        def domain(self):
            domain = PricingDomain(noise=5.0)
            yield domain
            domain.close()

Every test takes the `domain` fixture, so one override runs them all (ledgerlab runs it on its own domains in
tests/test_domain_contract.py). Four of them run the domain: `test_baseline_run_*` and
`test_a_missing_artifact_is_a_failed_run`. A domain whose runs take minutes can mark those slow by overriding
them (ledgerlab's ml_training does). `DETERMINISTIC = False` drops the check that a seed fixes a run's value,
for a domain that cannot promise it (GPU kernels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.guardrails import guardrails_of
from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import Domain, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.errors import InvalidCandidate


def run_request(domain: Domain, tmp_path: Path, files: dict[str, str] | None = None, seed: int = 0,
                run_id: str = "contract-0") -> RunRequest:
    """A request for one run of `files` (the baseline by default), against the baseline as control when the
    design is concurrent."""
    baseline = domain.baseline()
    control = dict(baseline) if domain.design == "concurrent" else None
    return RunRequest(run_id=run_id, candidate_id="c-contract", files=dict(baseline if files is None else files),
                      seed=seed, workdir=tmp_path / run_id, control_files=control,
                      control_candidate_id="c-baseline" if control is not None else None, isolation="auto")


def in_range(knob: Knob, value: Any) -> bool:
    """Whether `value` is one the knob declares."""
    if knob.kind == "choice":
        return value in knob.choices
    if knob.kind == "bool":
        return isinstance(value, bool)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return (knob.low is None or value >= knob.low) and (knob.high is None or value <= knob.high)


def json_text(value: Any, what: str) -> str:
    """`value` as JSON: what the ledger records must be plain data."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} must be JSON data (it is recorded in the ledger): {exc}") from None


class DomainContract:
    """The contract tests; subclass it as `Test...` and override the `domain` fixture."""

    DETERMINISTIC = True  # the same files and seed give the same value

    @pytest.fixture
    def domain(self) -> Domain:
        pytest.fail("override the `domain` fixture in your DomainContract subclass")

    # ------------------------------------------------------------------------------ required members

    def test_implements_the_protocol(self, domain: Domain) -> None:
        assert isinstance(domain, Domain), "a domain needs name, metric, design, description and four methods"
        assert isinstance(domain.name, str) and domain.name.strip(), "name: the non-empty name users type"
        assert isinstance(domain.metric, MetricSpec), "metric: a ledgerlab.core.protocols.MetricSpec"
        assert domain.design in ("independent", "concurrent"), f"design: independent or concurrent, not {domain.design!r}"
        assert isinstance(domain.description, str) and domain.description.strip(), "description: the proposers' brief"

    def test_baseline_is_text_files_and_the_same_each_time(self, domain: Domain) -> None:
        files = domain.baseline()
        assert files and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()), \
            "baseline(): a non-empty {file name: text}"
        assert domain.baseline() == files, "baseline() must return the same artifact every time"

    def test_the_baseline_is_valid(self, domain: Domain) -> None:
        domain.validate(domain.baseline())  # raising here rejects the starting point itself

    def test_knobs_are_declared_in_the_baseline_and_in_range(self, domain: Domain) -> None:
        knobs = domain.knobs()
        assert isinstance(knobs, Sequence) and all(isinstance(k, Knob) for k in knobs), "knobs(): a sequence of Knob"
        assert len({k.name for k in knobs}) == len(knobs), "knob names must be unique"
        baseline = domain.baseline()
        for knob in knobs:
            assert knob.file in baseline, f"knob {knob.name}: its file {knob.file!r} is not in the baseline"
            value = read_knob(dict(baseline), knob)
            assert in_range(knob, value), f"knob {knob.name}: baseline value {value!r} is outside its declared range"

    def test_a_broken_artifact_is_an_invalid_candidate(self, domain: Domain) -> None:
        # The loop records InvalidCandidate as PatchRejected with its reason; any other exception is a bug.
        with pytest.raises(InvalidCandidate):
            domain.validate({})

    # ------------------------------------------------------------------------------ optional hooks

    def test_optional_attributes_have_their_documented_types(self, domain: Domain) -> None:
        hooks = as_domain(domain)
        guardrails_of(domain)  # a tuple of Guardrail, or CampaignError naming the fix
        assert isinstance(hooks.budget_unit, str) and hooks.budget_unit, "budget_unit: what max_units counts"
        assert isinstance(hooks.runs_generated_code, bool), "runs_generated_code: a bool"
        per_run = hooks.candidates_per_run
        assert isinstance(per_run, int) and not isinstance(per_run, bool) and per_run >= 1, \
            "candidates_per_run: an int >= 1"
        assert per_run == 1 or domain.design == "concurrent", "candidates_per_run > 1 needs a concurrent design"

    def test_recorded_hooks_return_json_data(self, domain: Domain) -> None:
        hooks = as_domain(domain)
        environment, design = hooks.environment(), hooks.run_design()
        assert isinstance(environment, dict) and isinstance(design, dict), "environment(), run_design(): dicts"
        json_text(environment, "environment()")
        assert json_text(hooks.run_design(), "run_design()") == json_text(design, "run_design()"), \
            "run_design() must not change between calls: a resumed campaign compares it with the recorded one"
        options = hooks.option_defaults()
        assert options is None or isinstance(options, dict), "option_defaults(): None or {option: value}"

    def test_cancel_and_close_are_safe_with_nothing_running(self, domain: Domain) -> None:
        hooks = as_domain(domain)
        hooks.cancel_all()
        hooks.close()
        hooks.close()  # the CLI and the executor may both close it

    # ------------------------------------------------------------------------------ runs

    def test_baseline_run_finishes_with_a_value(self, domain: Domain, tmp_path: Path) -> None:
        result = self._run(domain, run_request(domain, tmp_path))
        assert result.status == "finished", f"the baseline's run {result.status}: {result.error}"
        assert result.value is not None and math.isfinite(result.value), "a finished run has a finite value"
        json_text(result.metrics, "RunResult.metrics")
        if domain.design == "concurrent":
            assert result.control_value is not None, "a concurrent run reports its control arm's control_value"
        self._reports_sums(domain, result)

    def test_baseline_run_depends_only_on_files_and_seed(self, domain: Domain, tmp_path: Path) -> None:
        if not self.DETERMINISTIC:
            pytest.skip("DETERMINISTIC = False")
        first = self._run(domain, run_request(domain, tmp_path, seed=7, run_id="contract-a"))
        second = self._run(domain, run_request(domain, tmp_path, seed=7, run_id="contract-b"))
        assert first.value == second.value, "the same files and seed gave different values: seed every source " \
                                            "of randomness from request.seed"

    def test_a_missing_artifact_is_a_failed_run(self, domain: Domain, tmp_path: Path) -> None:
        result = self._run(domain, run_request(domain, tmp_path, files={}))
        assert result.status != "finished", "a run of an empty artifact cannot finish"
        assert result.error, "a failed run says why in `error`"

    # ------------------------------------------------------------------------------ helpers

    @staticmethod
    def _run(domain: Domain, request: RunRequest) -> RunResult:
        try:
            result = domain.run(request)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the contract: failures are returned, never raised
            pytest.fail(f"run() raised {type(exc).__name__}: {exc}; return RunResult(status='crashed', ...)")
        assert isinstance(result, RunResult), f"run() must return a RunResult, not {type(result).__name__}"
        return result

    @staticmethod
    def _reports_sums(domain: Domain, result: RunResult) -> None:
        arms = [result.metrics] + ([result.control_metrics] if domain.design == "concurrent" else [])
        keys = [k for g in guardrails_of(domain) for k in (g.n_key, g.sum_key, g.sumsq_key)]
        keys += list(domain.metric.sums or ())
        for metrics in arms:
            missing = [k for k in keys if k not in metrics]
            assert not missing, f"a finished run must report the guardrail and metric sums {missing}"


__all__ = ["DomainContract", "in_range", "json_text", "run_request"]
