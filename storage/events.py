"""Event payloads: frozen, typed, versioned values with a `type` discriminator.

Every fact of a campaign is one of these. `encode` turns a payload into the (type, schema_version, JSON)
triple the ledger stores; `decode` turns a stored triple back into a payload, upcasting old schema versions
first (register an upcaster with `@upcaster("Type", from_version)` when a payload's shape changes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ledgerlab.kinds import Design, FailStatus, RunRole, VerdictDecision

# --------------------------------------------------------------------------------------------- base


class Event(BaseModel):
    """Base of all event payloads; subclasses set `type` and `SCHEMA_VERSION`."""

    # NaN/Infinity are written as Python's json writes them (and reads back), not silently as null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")
    SCHEMA_VERSION: ClassVar[int] = 1
    type: str


# ----------------------------------------------------------------------------------------- campaign


class CampaignStarted(Event):
    # v2: seed_base. v3: `judge` holds every JudgeSettings field and `guardrails` is a list unless the judge
    # checked its domain's (both upcast from older payloads: what the campaign ran with, never today's defaults).
    # v4: the judge's import_* settings (imports tested in a stream of their own). v5: import_alpha_policy,
    # import_wealth, import_bet (the imports' stream by alpha-investing). v6: import_futility_trust.
    SCHEMA_VERSION: ClassVar[int] = 6
    type: Literal["CampaignStarted"] = "CampaignStarted"
    domain: str
    metric: dict[str, Any]  # MetricSpec as a dict: name, direction, kind, delta, unit
    design: Design = "independent"
    config: dict[str, Any] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=dict)
    budgets: dict[str, Any] = Field(default_factory=dict)
    baseline_files: dict[str, str]
    baseline_candidate_id: str
    environment: dict[str, Any] = Field(default_factory=dict)
    data_checksum: str | None = None
    seed: int = 0
    # The baseline's first replicate seed (core/planner.first_seed of `seed`); every later seed follows from it
    # and the runs. v1 payloads are upcast to 0, the seed every campaign started on before it was derived.
    seed_base: int = 0
    # Guardrail specs the judge checks (core/protocols.Guardrail as dicts). None only for a campaign that
    # checked guardrails before they were recorded (commits 897eba0..99e05b6): it resumes with its domain's.
    guardrails: list[dict[str, Any]] | None = None
    # What the campaign is; a field added after v2 with a default, so an older payload reads as "search".
    # "search" proposes and judges changes; "transfer" re-measures another campaign's accepted changes at
    # another setting (core/transfer.py) and records where they came from in `transfer`: the source campaign,
    # the options changed, the seeds, and each change with the effect the source found.
    kind: Literal["search", "transfer"] = "search"
    transfer: dict[str, Any] | None = None


class ProposerFailed(Event):
    """A proposer's call raised (a bug, a provider outage): the campaign goes on, and pauses after a few in a row.

    A rejected proposal (ProposalRejected) is not a failure: it is a HypothesisProposed and a PatchRejected.
    """

    type: Literal["ProposerFailed"] = "ProposerFailed"
    agent: str
    proposer: str
    parent_candidate_id: str  # the incumbent it was asked to improve
    error: str  # `ExceptionType: first line of the message`
    traceback: str = ""  # the traceback's last lines (TRACEBACK_TAIL characters at most)
    consecutive: int = 1  # this agent's failures in a row, this one included


TRACEBACK_TAIL = 4000  # characters of a traceback kept in ProposerFailed: the innermost frames and the error


class CampaignPaused(Event):
    type: Literal["CampaignPaused"] = "CampaignPaused"
    reason: str


class CampaignResumed(Event):
    type: Literal["CampaignResumed"] = "CampaignResumed"
    reruns: list[str] = Field(default_factory=list)  # run ids started but never finished, to be re-run


class CampaignFinished(Event):
    type: Literal["CampaignFinished"] = "CampaignFinished"
    reason: str  # e.g. max_hypotheses, max_runs, time_limit, max_cost, proposer_exhausted
    detail: str = ""


# --------------------------------------------------------------------------------------- hypotheses


class HypothesisProposed(Event):
    type: Literal["HypothesisProposed"] = "HypothesisProposed"
    hypothesis_id: str
    agent: str = "agent-0"
    proposer: str
    rationale: str
    parent_candidate_id: str
    diff: str
    changes: dict[str, Any] = Field(default_factory=dict)  # knob name -> new value, when known


class PatchRejected(Event):
    type: Literal["PatchRejected"] = "PatchRejected"
    hypothesis_id: str
    reason: str


class CandidateCreated(Event):
    type: Literal["CandidateCreated"] = "CandidateCreated"
    candidate_id: str
    hypothesis_id: str
    parent_candidate_id: str


# --------------------------------------------------------------------------------------------- runs


class RunStarted(Event):
    type: Literal["RunStarted"] = "RunStarted"
    run_id: str
    candidate_id: str
    hypothesis_id: str | None = None  # None for incumbent/baseline replicates
    role: RunRole = "candidate"
    seed: int
    worker: str = "local"
    attempt: int = 1
    # Several candidates in one run (A/B/n or factorial): the first run id of the runs that share its traffic
    # window (each candidate is a run of its own); None for a run alone in its window.
    shared_window: str | None = None


class RunFinished(Event):
    type: Literal["RunFinished"] = "RunFinished"
    run_id: str
    value: float
    metrics: dict[str, Any] = Field(default_factory=dict)
    # Concurrent designs (A/B) measure the incumbent in the same window: its arm's value and metrics.
    control_value: float | None = None
    control_metrics: dict[str, Any] = Field(default_factory=dict)
    duration_s: float
    log_path: str | None = None


class RunFailed(Event):
    type: Literal["RunFailed"] = "RunFailed"
    run_id: str
    status: FailStatus
    error: str
    log_tail: str = ""
    duration_s: float = 0.0
    log_path: str | None = None
    retryable: bool = False  # void data, no fault of the candidate: run once more (core/protocols.py RunResult)
    units: float = 0.0  # budget units the failed run still used (a void window's visitors): they count in max_units


# ---------------------------------------------------------------------------------------- decisions


class VerdictReached(Event):
    type: Literal["VerdictReached"] = "VerdictReached"
    hypothesis_id: str
    decision: VerdictDecision
    reason: str = ""
    test: str
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None  # improvement of candidate over incumbent, in metric units, sign: better > 0
    ci_low: float | None = None
    ci_high: float | None = None
    n_candidate: int = 0
    n_incumbent: int = 0
    alpha_spent: float = 0.0
    looks: int = 1
    details: dict[str, Any] = Field(default_factory=dict)


class IncumbentChanged(Event):
    type: Literal["IncumbentChanged"] = "IncumbentChanged"
    candidate_id: str
    hypothesis_id: str
    previous_candidate_id: str
    seed_base: int = 0  # first seed not used to select this candidate: later pairings start here


# ------------------------------------------------------------------------------------- discoveries


class DiscoveryImported(Event):
    """A change another campaign accepted, queued here as a hypothesis this campaign's judge tests (core/discoveries.py).

    The loop proposes it (HypothesisProposed with `hypothesis_id`, agent "imported:<source campaign>") before
    its agents' own ideas; nothing here is adopted on the source's evidence.
    """

    type: Literal["DiscoveryImported"] = "DiscoveryImported"
    hypothesis_id: str  # the hypothesis it becomes in this campaign
    source_campaign_id: str
    source_hypothesis_id: str
    source_number: int = 0  # its #n in the source campaign
    domain: str
    rationale: str
    diff: str  # against its parent in the source campaign
    changes: dict[str, Any] = Field(default_factory=dict)  # knob name -> value: how it is re-expressed
    # The effect the source measured, better > 0: confirmed on fresh runs when it was, else as selected.
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    effect_basis: Literal["confirmed", "selected"] = "confirmed"
    # Where it came from: the bundle's content hash, the source's event seqs and hashes, its ledger head and
    # last signed checkpoint, the source verdict and run design.
    provenance: dict[str, Any] = Field(default_factory=dict)
    # Set on a second attempt: the hypothesis of the attempt whose test went stale (this campaign's incumbent
    # changed while it was tested), so the change had no verdict of its own here yet.
    retry_of: str | None = None


# -------------------------------------------------------------------------------------------- LLMs


class LLMCallCompleted(Event):
    type: Literal["LLMCallCompleted"] = "LLMCallCompleted"
    call_id: str
    agent: str = "agent-0"
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None  # None when the model's price is unknown (never a fake zero)
    latency_s: float
    ok: bool
    error: str | None = None
    purpose: str = "propose"
    # A reasoning model's thoughts before its answer (<think>…</think> or the provider's reasoning_content),
    # kept here and out of the hypothesis. None: no reasoning, or a call recorded before this field existed
    # (an added optional field: old payloads read as they are, no upcaster needed).
    reasoning: str | None = None


# ---------------------------------------------------------------------------------------- integrity


class CheckpointSigned(Event):
    """A signature over the chain head just before this event (storage/signing.py); state folds ignore it."""

    type: Literal["CheckpointSigned"] = "CheckpointSigned"
    head_seq: int  # the last event the signature covers
    head_hash: str  # that event's `hash`, which chains every event before it
    public_key: str  # Ed25519, the raw 32 bytes in hex
    key_id: str  # first 16 hex digits of sha256(raw public key)
    signature: str  # hex, over storage/signing.checkpoint_message(head_seq, head_hash)


# ------------------------------------------------------------------------------------ encode/decode

AnyEvent = Annotated[
    CampaignStarted | CampaignPaused | CampaignResumed | CampaignFinished | ProposerFailed
    | HypothesisProposed | PatchRejected | CandidateCreated | RunStarted | RunFinished | RunFailed
    | VerdictReached | IncumbentChanged | DiscoveryImported | LLMCallCompleted | CheckpointSigned,
    Field(discriminator="type"),
]
EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        CampaignStarted, CampaignPaused, CampaignResumed, CampaignFinished, ProposerFailed, HypothesisProposed,
        PatchRejected, CandidateCreated, RunStarted, RunFinished, RunFailed, VerdictReached,
        IncumbentChanged, DiscoveryImported, LLMCallCompleted, CheckpointSigned,
    )
}
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upcaster(
    event_type: str, from_version: int
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """Register a function that turns a `from_version` payload dict into a `from_version + 1` one."""

    def register(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("CampaignStarted", 1)
def _campaign_started_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 campaigns ran their baseline from seed 0 whatever their `seed` was: they keep doing so on resume."""
    return {**data, "seed_base": 0}


# What a campaign ran with before each judge setting existed (the commit that added it): a key its recorded
# `judge` lacks is the feature off or the old rule, never today's default. Frozen: a setting added later
# gets its own upcaster (tests/test_upcasting.py checks every JudgeSettings field is covered).
JUDGE_BEFORE_V3: dict[str, Any] = {
    "futility_min_df": 0,  # 687a295: futility always binding
    "futility_scale": "p",  # 96b8f45: every look dropped a hypothesis at p > futility_p
    "guardrails": False,  # 897eba0: no guardrail veto
    "incumbent_seeds": 0,  # c3dfb37: no seed rotation, replicate i on seed base + i
    "accept_from": 1,  # 8d2bf4c: accepts from the first look
    "skew_max": math.inf,  # 1a8433b: no skew check, the means compared whenever that was more precise
    "holdback_precision": 0.05, "holdback_max_runs": 0,  # d1b7b2f: no A/B holdback
    "holdback_max_pairs": 0,  # c2c3252: no independent holdback
    # 8eb46de: no "fdr" alpha policy existed, so these were never read; today's values, for one shape.
    "fdr_lambda": 0.05, "fdr_tau": 0.7, "fdr_w0": 0.9, "fdr_decay": None, "fdr_flat": 20,
}


@upcaster("CampaignStarted", 2)
def _campaign_started_v2_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Every judge setting present, with what the campaign ran with; no guardrails where the judge had none."""
    judge = {**JUDGE_BEFORE_V3, **(data.get("judge") or {})}
    guardrails = data.get("guardrails")
    if guardrails is None and not judge["guardrails"]:
        guardrails = []  # recorded before guardrails were, by a judge that checked none
    return {**data, "judge": judge, "guardrails": guardrails}


@upcaster("CampaignStarted", 3)
def _campaign_started_v3_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Before v4 an import was tested in the campaign's own stream, with its futility bound."""
    judge = dict(data.get("judge") or {})
    old = {"import_alpha": 0.0, "import_flat": 2, "import_futility_p": judge.get("futility_p", 0.2)}
    return {**data, "judge": {**old, **judge}}


@upcaster("CampaignStarted", 4)
def _campaign_started_v4_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Before v5 the imports' stream followed the campaign's alpha policy (None), at the import_alpha recorded."""
    judge = dict(data.get("judge") or {})
    old = {"import_alpha_policy": None, "import_wealth": 0.5, "import_bet": 0.5}  # the last two unread under None
    return {**data, "judge": {**old, **judge}}


@upcaster("CampaignStarted", 5)
def _campaign_started_v5_v6(data: dict[str, Any]) -> dict[str, Any]:
    """Before v6 every import's look-1 futility bound was import_futility_p, whatever the imports' wealth."""
    judge = dict(data.get("judge") or {})
    old = {"import_futility_trust": judge.get("import_futility_p", judge.get("futility_p", 0.2))}
    return {**data, "judge": {**old, **judge}}


def encode(event: Event) -> tuple[str, int, str]:
    """Return (type, schema_version, compact JSON payload) for storage."""
    # pydantic's own serializer (what model_dump_json calls, minus its per-call option handling: half the
    # time of a small payload): fields in declaration order, no whitespace. Deterministic for a given payload,
    # which is all the hash chain needs (it hashes the stored text, never a re-encoding).
    return event.type, type(event).SCHEMA_VERSION, event.__pydantic_serializer__.to_json(event).decode()


def decode(event_type: str, schema_version: int, payload: str | dict[str, Any]) -> Event:
    """Rebuild a payload from storage, upcasting old schema versions to the current one."""
    data = json.loads(payload) if isinstance(payload, str) else dict(payload)
    data.setdefault("type", event_type)
    current = EVENT_TYPES[event_type].SCHEMA_VERSION
    version = schema_version
    while version < current:
        data = _UPCASTERS[(event_type, version)](data)
        version += 1
    return _ADAPTER.validate_python(data)


class StoredEvent(NamedTuple):
    """One row of the `events` table, as read back (immutable)."""

    # A NamedTuple rather than a frozen dataclass: an append builds one per event, and a frozen dataclass's
    # __init__ (one object.__setattr__ per field) cost 1.7 µs of the ≈ 20 µs budget per event vs 0.5 µs here.

    seq: int
    event_id: str
    campaign_id: str
    version: int
    type: str
    schema_version: int
    payload: str
    recorded_at: datetime
    prev_hash: str
    hash: str

    def event(self) -> Event:
        """The typed payload of this row (upcast to the current schema)."""
        return decode(self.type, self.schema_version, self.payload)


# ------------------------------------------------------------------------------------- hash chain
# The canonical row is defined here once; storage/verify.py recomputes the same string in SQL
# (`CANONICAL_SQL`), so a change to one must change the other (the verify tests catch a mismatch).

GENESIS_HASH = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # recorded_at in the canonical row: UTC, always 6 fractional digits


def canonical_row(
    prev_hash: str, seq: int, event_id: str, campaign_id: str, version: int, event_type: str,
    schema_version: int, payload: str, recorded_at: datetime | str,
) -> str:
    """`prev_hash|seq|event_id|campaign_id|version|type|schema_version|payload|recorded_at` as hashed."""
    stamp = recorded_at if isinstance(recorded_at, str) else recorded_at.strftime(TIME_FORMAT)
    return f"{prev_hash}|{seq}|{event_id}|{campaign_id}|{version}|{event_type}|{schema_version}|{payload}|{stamp}"


def row_hash(*fields: Any) -> str:
    """SHA-256 hex of `canonical_row(*fields)` (recorded_at may be given pre-formatted with TIME_FORMAT)."""
    return hashlib.sha256(canonical_row(*fields).encode("utf-8")).hexdigest()


def utc_now() -> datetime:
    """The current time in UTC (timezone-aware, microsecond precision)."""
    return datetime.now(UTC)


def new_event_ids(count: int) -> list[str]:
    """`count` random (version 4) UUID strings, as str(uuid.uuid4()) writes them, from one urandom call."""
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = digits[start:start + 32]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122 variant bits 10xx


def seal(
    campaign_id: str, events: Sequence[Event], *, first_seq: int, first_version: int, prev_hash: str,
    recorded_at: datetime | None = None,
) -> list[StoredEvent]:
    """Turn payloads into chained rows: consecutive seq and version numbers, one timestamp, linked hashes."""
    stamp = recorded_at or utc_now()
    stamp_text = stamp.strftime(TIME_FORMAT)  # one timestamp per append: format it once
    rows: list[StoredEvent] = []
    for offset, (event, event_id) in enumerate(zip(events, new_event_ids(len(events)))):
        event_type, schema_version, payload = encode(event)
        seq, version = first_seq + offset, first_version + offset
        digest = row_hash(prev_hash, seq, event_id, campaign_id, version, event_type, schema_version, payload,
                          stamp_text)
        rows.append(StoredEvent(seq, event_id, campaign_id, version, event_type, schema_version, payload, stamp,
                                prev_hash, digest))
        prev_hash = digest
    return rows
