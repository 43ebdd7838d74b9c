"""DomainBase: the base a domain subclasses, with a documented default for every optional hook.

    class PricingDomain(DomainBase):
        name, metric, design, description = ...       # required
        def baseline(self): ...; def knobs(self): ...; def validate(self, files): ...; def run(self, request): ...

The loop calls each hook directly (`as_domain(domain).environment()`). A domain that does not subclass
(any object with core/protocols.py's `Domain` members still works) is wrapped by `as_domain` in a
`DomainAdapter`, the one place that reads a hook with getattr and falls back to the default below.
`core/protocols.py`'s `Domain` Protocol stays what type checks see; `ledgerlab.testing.domain_contract` checks
that a domain's hooks behave as documented here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ledgerlab.core.protocols import Domain, Files, Guardrail, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.kinds import Design

HOOKS = ("guardrails", "budget_unit", "candidates_per_run", "runs_generated_code", "environment", "run_design",
         "option_defaults", "cancel_all", "close")


class DomainBase(ABC):
    """A kind of experiment: the four required members of `Domain`, and optional hooks with their defaults."""

    # --- required (core/protocols.py's Domain)
    name: str
    metric: MetricSpec
    design: Design
    description: str  # instructions for proposers: what may change and what may not (program.md)

    # --- optional attributes: override as class attributes or set them per instance in __init__
    # Secondary metrics an accepted change must not significantly worsen (core/guardrails.py).
    guardrails: tuple[Guardrail, ...] = ()
    # What `[budgets] max_units` counts; a run reports its units as `metrics["units"]`.
    budget_unit: str = "units"
    # Concurrent designs only: how many candidates one run may test against one shared control (A/B/n).
    candidates_per_run: int = 1
    # True: runs execute the artifact, so they belong in core/sandbox.py's sandbox and honour
    # RunRequest.isolation. False: the artifact is data (marketing's variant.toml) and isolation is "none".
    runs_generated_code: bool = True

    @abstractmethod
    def baseline(self) -> dict[str, str]:
        """The starting artifact: file name -> text."""

    @abstractmethod
    def knobs(self) -> Sequence[Knob]:
        """Declared tunable constants (may be empty), most promising first."""

    @abstractmethod
    def validate(self, files: Files) -> None:
        """Raise InvalidCandidate with a reason when the files break the domain's rules."""

    @abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        """Execute one run; failures are returned as a RunResult, never raised."""

    # --- optional methods

    def environment(self) -> dict[str, Any]:
        """What CampaignStarted records about where the campaign ran (data checksums, devices). Default: {}."""
        return {}

    def run_design(self) -> dict[str, Any]:
        """The options that change what a run measures; a campaign refuses to resume with other values, since
        a hypothesis's runs are pooled into one test (core/run_design.py). Default: {} (nothing to keep)."""
        return {}

    def option_defaults(self) -> dict[str, Any] | None:
        """The `[domain]` options `ledgerlab init` writes, with the values this instance resolved. Default:
        None, and `init` lists the constructor's keyword arguments instead."""
        return None

    def cancel_all(self) -> None:
        """Stop the runs in flight (Ctrl-C; the local executor's shutdown). Default: nothing to stop."""
        return None

    def close(self) -> None:
        """Release what the domain holds (servers, pools) when the campaign ends. Default: nothing held."""
        return None


class DomainAdapter(DomainBase):
    """A domain that does not subclass DomainBase, seen through it: its own members, else the defaults."""

    def __init__(self, domain: Any) -> None:
        self.wrapped = domain

    def __getattr__(self, name: str) -> Any:
        # Only reached for what DomainBase does not define: the required attributes and a domain's own extras.
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"DomainAdapter({self.wrapped!r})"

    def _attribute(self, name: str) -> Any:
        return getattr(self.wrapped, name, getattr(DomainBase, name))

    @property
    def guardrails(self) -> tuple[Guardrail, ...]:  # type: ignore[override]  # read through to the wrapped domain
        return self._attribute("guardrails")

    @property
    def budget_unit(self) -> str:  # type: ignore[override]  # read through to the wrapped domain
        return self._attribute("budget_unit")

    @property
    def candidates_per_run(self) -> int:  # type: ignore[override]  # read through to the wrapped domain
        return self._attribute("candidates_per_run")

    @property
    def runs_generated_code(self) -> bool:  # type: ignore[override]  # read through to the wrapped domain
        return self._attribute("runs_generated_code")

    def baseline(self) -> dict[str, str]:
        return self.wrapped.baseline()

    def knobs(self) -> Sequence[Knob]:
        return self.wrapped.knobs()

    def validate(self, files: Files) -> None:
        self.wrapped.validate(files)

    def run(self, request: RunRequest) -> RunResult:
        return self.wrapped.run(request)

    def environment(self) -> dict[str, Any]:
        return self._call("environment")

    def run_design(self) -> dict[str, Any]:
        return self._call("run_design")

    def option_defaults(self) -> dict[str, Any] | None:
        return self._call("option_defaults")

    def cancel_all(self) -> None:
        self._call("cancel_all")

    def close(self) -> None:
        self._call("close")

    def _call(self, name: str) -> Any:
        hook = getattr(self.wrapped, name, None)
        return hook() if callable(hook) else getattr(DomainBase, name)(self)


def as_domain(domain: Domain | DomainBase | object) -> DomainBase:
    """`domain` with every optional hook callable: itself when it subclasses DomainBase, else adapted (any
    object: what it lacks reads as the defaults, so a check such as guardrails_of sees what it has)."""
    return domain if isinstance(domain, DomainBase) else DomainAdapter(domain)
