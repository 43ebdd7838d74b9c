"""ledgerlab.testing.domain_contract on every domain we ship, and DomainBase's defaults for a domain that does not
subclass it (the adapter is the one place the loop falls back on a missing hook)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledgerlab.core.domain_base import HOOKS, DomainAdapter, DomainBase, as_domain
from ledgerlab.core.protocols import Files, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.domains.marketing.domain import MarketingDomain
from ledgerlab.domains.ml_training.domain import MLTrainingDomain
from ledgerlab.errors import InvalidCandidate
from ledgerlab.testing import ToyDomain
from ledgerlab.testing.domain_contract import DomainContract
from tests.window_domain import WindowDomain


def _docs_example() -> type:
    """docs/domains.md's PricingDomain, from the page's first python block (as tests/test_docs_domain.py reads it)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "domains.md").read_text(encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(re.findall(r"```python\n(.*?)```", text, re.S)[0], "docs/domains.md", "exec"), namespace)
    return namespace["PricingDomain"]


class TestDocsExampleContract(DomainContract):
    @pytest.fixture
    def domain(self) -> Any:
        return _docs_example()(noise=5.0)


class TestToyContract(DomainContract):
    @pytest.fixture
    def domain(self) -> ToyDomain:
        return ToyDomain()


class TestWindowContract(DomainContract):
    @pytest.fixture
    def domain(self) -> WindowDomain:
        return WindowDomain(visitors=2_000)


class TestMarketingContract(DomainContract):
    @pytest.fixture
    def domain(self) -> Iterator[MarketingDomain]:
        domain = MarketingDomain(visitors_per_run=2_000)  # an embedded market; small windows keep runs short
        yield domain
        domain.close()


class TestMLTrainingContract(DomainContract):
    """The cheap checks; the three that train (a sandboxed run each) are slow."""

    @pytest.fixture
    def domain(self) -> Iterator[MLTrainingDomain]:
        domain = MLTrainingDomain()
        yield domain
        domain.close()

    @pytest.mark.slow
    def test_baseline_run_finishes_with_a_value(self, domain: Any, tmp_path: Path) -> None:
        super().test_baseline_run_finishes_with_a_value(domain, tmp_path)

    @pytest.mark.slow
    def test_baseline_run_depends_only_on_files_and_seed(self, domain: Any, tmp_path: Path) -> None:
        super().test_baseline_run_depends_only_on_files_and_seed(domain, tmp_path)

    @pytest.mark.slow
    def test_a_missing_artifact_is_a_failed_run(self, domain: Any, tmp_path: Path) -> None:
        super().test_a_missing_artifact_is_a_failed_run(domain, tmp_path)


# ------------------------------------------------------------------------------------------ a plain domain


class PlainDomain:
    """The Domain protocol's members and nothing else: no DomainBase, no optional hook."""

    name = "plain"
    metric = MetricSpec(name="v", direction="minimize")
    design = "independent"
    description = "Set V in v.txt."

    def baseline(self) -> dict[str, str]:
        return {"v.txt": "V = 1\n"}

    def knobs(self) -> Sequence[Knob]:
        return ()

    def validate(self, files: Files) -> None:
        if "v.txt" not in files:
            raise InvalidCandidate("v.txt is missing")

    def run(self, request: RunRequest) -> RunResult:
        if "v.txt" not in request.files:
            return RunResult(status="invalid", error="v.txt is missing")
        return RunResult(status="finished", value=float(request.seed))


class TestPlainContract(DomainContract):
    @pytest.fixture
    def domain(self) -> PlainDomain:
        return PlainDomain()


class Bare(DomainBase):
    name, metric, design, description = PlainDomain.name, PlainDomain.metric, "independent", "bare"
    baseline, knobs, validate, run = PlainDomain.baseline, PlainDomain.knobs, PlainDomain.validate, PlainDomain.run


def _hook_values(domain: DomainBase) -> dict[str, Any]:
    return {h: (value() if callable(value := getattr(domain, h)) else value) for h in HOOKS}


def test_a_plain_domain_gets_exactly_domain_base_defaults() -> None:
    adapted = as_domain(PlainDomain())
    assert isinstance(adapted, DomainAdapter) and adapted.name == "plain"
    assert _hook_values(adapted) == _hook_values(Bare()) == {
        "guardrails": (), "budget_unit": "units", "candidates_per_run": 1, "runs_generated_code": True,
        "environment": {}, "run_design": {}, "option_defaults": None, "cancel_all": None, "close": None}


def test_the_adapter_reads_the_hooks_a_plain_domain_has() -> None:
    class Some(PlainDomain):
        runs_generated_code = False
        candidates_per_run = 2
        closed = 0

        def environment(self) -> dict[str, Any]:
            return {"where": "here"}

        def close(self) -> None:
            self.closed += 1

    domain = Some()
    adapted = as_domain(domain)
    adapted.close()
    assert (adapted.runs_generated_code, adapted.candidates_per_run, adapted.environment(), domain.closed) == \
        (False, 2, {"where": "here"}, 1)
    assert adapted.run_design() == {} and as_domain(adapted) is adapted


def test_a_subclass_is_its_own_hooks() -> None:
    toy = ToyDomain()
    assert as_domain(toy) is toy
