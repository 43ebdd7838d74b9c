"""The plug-in protocols (Domain, Proposer, Executor) and the values that flow between them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ledgerlab.kinds import Design, RunOutcome

Files = Mapping[str, str]  # an artifact: file name -> text


class Value(BaseModel):
    """Base for frozen value objects."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ------------------------------------------------------------------------------------------ domains


class MetricSpec(Value):
    """The primary metric: what is measured, which way is better, and the smallest change that matters."""

    name: str
    direction: Literal["minimize", "maximize"]
    kind: Literal["continuous", "proportion"] = "continuous"
    delta: float = 0.0  # practical margin: accept only improvements shown to exceed this
    unit: str = ""
    # The false-accept level changes to this metric are judged at unless the [judge] table sets one (unset:
    # 0.01). A domain knows its noise and what a wrong accept costs (A/B practice: 0.05).
    alpha: float | None = Field(default=None, gt=0, lt=1)
    # Concurrent designs whose metric is a per-unit mean (revenue per visitor): the run-metrics keys of each
    # arm's units, sum and sum of squares. The judge then pools them over runs and uses Welch's test.
    sums: tuple[str, str, str] | None = None


class Guardrail(Value):
    """A secondary metric an accepted change must not make significantly worse (A/B practice).

    Each run reports, per arm, the metric's per-unit sums in its metrics (`n_key`, `sum_key`, `sumsq_key`,
    e.g. visitors and the winsorized revenue sum and sum of squares); the loop pools them over a hypothesis's
    runs and tests "the candidate is worse" with Welch's test at `alpha` (core/guardrails.py). A domain
    declares its guardrails in an optional `guardrails` attribute.
    """

    name: str
    direction: Literal["minimize", "maximize"]
    n_key: str
    sum_key: str
    sumsq_key: str
    alpha: float = Field(default=0.05, gt=0, lt=1)
    unit: str = ""
    # Tolerated worsening, a share of the incumbent's mean: harm means "worse by more than this" (a
    # non-inferiority test); 0: any significant worsening is harm.
    margin: float = Field(default=0.0, ge=0, lt=1)


class Knob(Value):
    """A tunable UPPER_CASE constant in an artifact file, with its type and range."""

    name: str
    file: str
    kind: Literal["int", "float", "choice", "bool"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False  # step multiplicatively (learning rates, sizes)
    help: str = ""


class Arm(Value):
    """A further candidate arm of a concurrent run (A/B/n): its own run id, files and replicate seed."""

    run_id: str
    candidate_id: str
    files: dict[str, str]
    seed: int


class RunRequest(Value):
    """One run: a candidate's files, a replicate seed, where to work and how long it may take."""

    run_id: str
    candidate_id: str
    files: dict[str, str]
    seed: int
    workdir: Path
    attempt: int = 1  # > 1: a retry of a failed or interrupted run of the same candidate and seed
    timeout_s: float | None = None
    # Concurrent (A/B) designs run the incumbent in the same window as the control arm.
    control_files: dict[str, str] | None = None
    control_candidate_id: str | None = None
    # A/B/n: further candidates in the same window against the same control (only for a domain whose
    # `candidates_per_run` is above 1); each is a run of its own in the ledger.
    arms: tuple[Arm, ...] = ()
    threads: int | None = None  # CPU threads this run may use
    device: str | None = None  # e.g. "cuda:0"; None lets the domain choose
    options: dict[str, Any] = Field(default_factory=dict)  # domain options from ledgerlab.toml
    # How generated code is isolated (core/sandbox.py): "auto" (bubblewrap where it works, else a plain child
    # process), "strict" (bubblewrap or the run fails), "process" (a plain child process).
    isolation: Literal["auto", "strict", "process"] = "auto"
    keep_workdir: bool = False  # keep the run's working copy after it ends (for debugging)


class RunResult(Value):
    """The outcome of a run: finished with a value, or failed with a kind and the log's tail."""

    status: RunOutcome
    value: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    control_value: float | None = None
    control_metrics: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
    log_tail: str = ""
    duration_s: float = 0.0
    log_path: str | None = None
    # A failure that says nothing about the candidate: its data is void (the traffic split broke: a sample-ratio
    # mismatch). The loop runs it once more, as attempt 2 (new traffic), before it rejects the hypothesis for it.
    retryable: bool = False
    # A/B/n: the further arms' results by run id (each with this run's control); an arm missing here
    # shares this result's failure.
    arms: dict[str, RunResult] = Field(default_factory=dict)


@runtime_checkable
class Domain(Protocol):
    """A kind of experiment: an editable artifact, a metric, and a way to run a candidate."""

    name: str
    metric: MetricSpec
    design: Design
    description: str  # instructions for proposers: what may change and what may not (program.md)
    # The optional hooks (guardrails, budget_unit, candidates_per_run, runs_generated_code, environment(),
    # run_design(), option_defaults(), cancel_all(), close()) and their defaults are core/domain_base.py's
    # DomainBase, which a domain subclasses; the loop reads them through `as_domain`, so a domain that only
    # has the members below works too.

    def baseline(self) -> dict[str, str]:
        """The starting artifact: file name -> text."""
        ...

    def knobs(self) -> Sequence[Knob]:
        """Declared tunable constants (may be empty)."""
        ...

    def validate(self, files: Files) -> None:
        """Raise InvalidCandidate with a reason when the files break the domain's rules."""
        ...

    def run(self, request: RunRequest) -> RunResult:
        """Execute one run; failures are returned as a RunResult, never raised."""
        ...


# ---------------------------------------------------------------------------------------- proposers


class HistoryItem(Value):
    """One hypothesis as a proposer sees it in the ledger."""

    hypothesis_id: str
    agent: str
    rationale: str
    parent_candidate_id: str
    candidate_id: str | None = None  # None until the patch was applied (and for rejected patches)
    diff: str
    changes: dict[str, Any] = Field(default_factory=dict)
    status: str  # proposed, patch_rejected, testing, accepted, rejected
    effect: float | None = None
    p_value: float | None = None
    reason: str = ""


class ProposalContext(Value):
    """What a proposer is given: the domain, the incumbent, and the campaign's history."""

    domain_name: str
    description: str
    metric: MetricSpec
    knobs: tuple[Knob, ...] = ()
    incumbent_id: str
    incumbent_files: dict[str, str]
    history: tuple[HistoryItem, ...] = ()
    agent: str = "agent-0"
    seed: int = 0  # reproducible randomness for this proposal


class Proposal(Value):
    """A hypothesis: a rationale and the full new files (the loop computes the canonical diff)."""

    rationale: str
    files: dict[str, str]
    changes: dict[str, Any] = Field(default_factory=dict)


class Proposer(Protocol):
    """Turns a ProposalContext into a Proposal, or None when it has nothing left to try."""

    name: str

    def propose(self, context: ProposalContext, sink: EventSink | None = None) -> Proposal | None:
        """Return the next hypothesis; LLM proposers report their calls to `sink`."""
        ...


class EventSink(Protocol):
    """Where a plug-in reports side events (LLM calls) for the loop to append to the ledger."""

    def emit(self, event: Any) -> None:
        """Record one event payload."""
        ...


# ---------------------------------------------------------------------------------------- executors


class Executor(Protocol):
    """Runs runs; the campaign process stays the only writer and collects the results."""

    name: str
    slots: int  # how many runs may be in flight at once

    def submit(self, domain_name: str, request: RunRequest) -> None:
        """Start a run in the background."""
        ...

    def wait(self, timeout: float | None = None) -> list[tuple[str, RunResult]]:
        """Block until at least one run is done; return (run_id, result) pairs."""
        ...

    def shutdown(self) -> None:
        """Stop all work and release resources."""
        ...
