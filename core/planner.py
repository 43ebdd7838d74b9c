"""What runs a campaign needs next, and the evidence a hypothesis's finished runs give the judge.

Seeds: every incumbent I has a `seed_base` b (for the baseline, `first_seed` of the campaign seed, recorded in
CampaignStarted; for a later incumbent, the first seed no run had used when it was accepted). Independent
designs: the k-th hypothesis proposed on I runs replicate i on seed b + (k + i) mod W, W =
`JudgeSettings.seed_window` (16 by default). So each of I's runs is shared by the hypotheses that land on its
seed (DESIGN: "reuse incumbent runs already in the ledger"), I gathers up to W replicates as hypotheses rotate
through the window ("the incumbent keeps gathering replicates"), and no one incumbent run is the first
comparison of every hypothesis: with a single shared seed, a lucky incumbent run would block (or an unlucky
one wave through) every change tried on it. Concurrent designs (A/B) run both arms
in each run's window: replicate i of every hypothesis is on seed b + i. After an accept, the new incumbent's
first `confirm_runs` seeds are fresh: its runs there (and the replaced incumbent's, for an independent
design) measure the change on data not used to select it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledgerlab.core import holdback
from ledgerlab.core.judge import Evidence
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord
from ledgerlab.kinds import RunRole

MAX_INCUMBENT_ATTEMPTS = 3  # an incumbent run failing this often on one seed pauses the campaign
# A candidate run whose data is void (RunResult.retryable: a sample-ratio mismatch) is run this many times on
# its seed, each attempt on new traffic, before the hypothesis is rejected for it. At SRM's 0.001 a window
# mismatches by chance about once in a thousand, and took up to three hypotheses with it.
MAX_VOID_ATTEMPTS = 2


@dataclass(frozen=True)
class RunSpec:
    """A run the campaign needs: which candidate, in which role, on which seed (and against which control)."""

    candidate_id: str
    role: RunRole
    seed: int
    hypothesis_id: str | None = None
    control_id: str | None = None  # concurrent designs: the arm it shares its window with


@dataclass
class RunIndex:
    """The campaign's runs, grouped the ways the planner asks for them."""

    incumbent: dict[tuple[str, int], list[RunRecord]] = field(default_factory=lambda: defaultdict(list))
    by_hypothesis: dict[str, list[RunRecord]] = field(default_factory=lambda: defaultdict(list))
    by_candidate: dict[str, list[RunRecord]] = field(default_factory=lambda: defaultdict(list))  # candidate role

    @classmethod
    def of(cls, state: CampaignState) -> RunIndex:
        index = cls()
        for run in state.runs.values():
            if run.role == "incumbent":
                index.incumbent[(run.candidate_id, run.seed)].append(run)
            elif run.hypothesis_id is not None:
                index.by_hypothesis[run.hypothesis_id].append(run)
            if run.role == "candidate":
                index.by_candidate[run.candidate_id].append(run)
        return index

    def seeds_tested_before(self, record: HypothesisRecord) -> set[int]:
        """The seeds the record's candidate ran on for an earlier hypothesis (a re-tested import's)."""
        assert record.candidate_id is not None
        return {r.seed for r in self.by_candidate.get(record.candidate_id, ())
                if r.hypothesis_id != record.hypothesis_id}

    def incumbent_run(self, candidate_id: str, seed: int) -> RunRecord | None:
        """The finished incumbent-role run of `candidate_id` on `seed`, else a running one, else None."""
        runs = self.incumbent.get((candidate_id, seed), [])
        for status in ("finished", "running"):
            for run in runs:
                if run.status == status:
                    return run
        return None

    def incumbent_failures(self, candidate_id: str, seed: int) -> list[RunRecord]:
        return [r for r in self.incumbent.get((candidate_id, seed), []) if r.status not in ("finished", "running")]

    def seed_runs(self, hypothesis_id: str | None, seed: int) -> list[RunRecord]:
        """The hypothesis's candidate runs on `seed`, in the order they started (a void one, then its retry)."""
        return [r for r in self.by_hypothesis.get(hypothesis_id or "", []) if r.seed == seed]

    def retry_due(self, hypothesis_id: str, seed: int) -> bool:
        """Whether the hypothesis's run on `seed` is void and gets another attempt (MAX_VOID_ATTEMPTS)."""
        return void_retry(self.seed_runs(hypothesis_id, seed)) is not None


def void_retry(runs: Sequence[RunRecord]) -> int | None:
    """The attempt that runs a candidate again on a seed where `runs` (all its runs there) were void, or None:
    no run yet, one that was not void (only a failed run is retryable), or MAX_VOID_ATTEMPTS void already."""
    if 0 < len(runs) < MAX_VOID_ATTEMPTS and all(r.retryable for r in runs):
        return len(runs) + 1
    return None


SEED_STRIDE = 1_000_000  # replicate seeds one campaign seed owns: campaign seed 11 runs 11,000,000, 11,000,001, ...


def first_seed(campaign_seed: int) -> int:
    """The baseline's first replicate seed for a campaign seed (recorded in CampaignStarted.seed_base).

    Seed 0 keeps 0, the seed every campaign started on before they were derived (its ledgers and benchmarks
    are unchanged). Seeds 1 to 2146 start at seed × SEED_STRIDE, so two campaigns with different seeds share
    no replicate seed unless one runs a million. Any other seed starts at a multiple of 1,000 drawn from its
    SHA-256 (a campaign uses a few thousand seeds, so its range rarely meets another's). Every seed stays below
    2^31: a plug-in's RNG gets a non-negative 31-bit seed.
    """
    if 0 <= campaign_seed <= (2**31 - 1) // SEED_STRIDE - 1:
        return campaign_seed * SEED_STRIDE
    digest = hashlib.sha256(f"ledgerlab campaign seed {campaign_seed}".encode()).digest()
    span = (2**31 - 2 * SEED_STRIDE) // 1000
    return SEED_STRIDE + 1000 * (int.from_bytes(digest[:8], "big") % span)


def confirm_seeds(state: CampaignState, candidate_id: str, runs: int) -> list[int]:
    """The fresh seeds an incumbent is measured on right after it was accepted (calibration for the baseline)."""
    base = state.seed_base.get(candidate_id, 0)
    return [base + i for i in range(runs)]


def rotation_seeds(base: int, offset: int, window: int) -> list[int]:
    """The seeds, in order, for the replicates of the hypothesis at `offset` among those on its incumbent."""
    return [base + (offset + i) % window for i in range(window)]


def rotation_offsets(state: CampaignState) -> dict[str, int]:
    """Each hypothesis's place among those proposed on the same incumbent (fixed once it is proposed)."""
    count: dict[str, int] = defaultdict(int)
    offsets = {}
    for record in state.hypotheses.values():
        offsets[record.hypothesis_id] = count[record.parent_candidate_id]
        count[record.parent_candidate_id] += 1
    return offsets


def needed_runs(state: CampaignState, design: str, index: RunIndex, needs: dict[str, int],
                calibration_runs: int, confirm_runs: int, window: int = 1) -> list[RunSpec]:
    """Runs not yet started that the campaign needs now, most urgent first (`window`: see the module doc)."""
    specs: list[RunSpec] = []
    incumbent = state.incumbent_id
    previous = state.incumbent_parent.get(incumbent)
    hypothesis = _accepting_hypothesis(state, incumbent)
    first = calibration_runs if previous is None else confirm_runs
    for seed in confirm_seeds(state, incumbent, first):
        control = incumbent if previous is None else previous
        specs += _incumbent_spec(index, incumbent, seed, hypothesis, control if design == "concurrent" else None)
        if previous is not None and design == "independent":
            specs += _incumbent_spec(index, previous, seed, hypothesis, None)
    offsets = rotation_offsets(state) if design == "independent" and window > 1 else {}
    for record in state.open_hypotheses():
        if record.status == "testing" and record.parent_candidate_id == incumbent:
            specs += _hypothesis_specs(state, design, index, record, needs.get(record.hypothesis_id, 1),
                                       offsets.get(record.hypothesis_id, 0), window)
    return specs


def with_holdback(state: CampaignState, specs: list[RunSpec], count: int) -> list[RunSpec]:
    """`specs` (from `needed_runs`) with the incumbent's holdback windows up to `count`, after its own runs."""
    extra = holdback_specs(state, count)
    if not extra:
        return specs
    first = next((i for i, spec in enumerate(specs) if spec.role != "incumbent"), len(specs))
    return specs[:first] + extra + specs[first:]


def holdback_specs(state: CampaignState, count: int) -> list[RunSpec]:
    """The incumbent's first `count` holdback windows (A/B) or pairs not yet run (a seed that failed 3 times is
    given up)."""
    assert state.started is not None
    incumbent, baseline = state.incumbent_id, state.started.baseline_candidate_id
    if count <= 0 or incumbent == baseline:
        return []
    if state.started.design != "concurrent":
        return _pair_specs(state, count)
    tried: dict[int, list[RunRecord]] = defaultdict(list)
    for run in holdback.runs_of(state, incumbent, finished_only=False):
        tried[run.seed].append(run)
    specs = []
    for seed in holdback.seeds(state, incumbent, count):
        runs = tried.get(seed, [])
        if any(r.status in ("finished", "running") for r in runs) or len(runs) >= MAX_INCUMBENT_ATTEMPTS:
            continue
        specs.append(RunSpec(incumbent, holdback.ROLE, seed, None, baseline))
    return specs


def _pair_specs(state: CampaignState, count: int) -> list[RunSpec]:
    """Independent designs: the runs missing from the incumbent's first `count` holdback pairs, both arms on
    each seed (the incumbent's first); a seed where either arm failed 3 times is given up for the next one,
    within 2 × `count` seeds (a candidate that keeps failing must not hold the campaign open)."""
    assert state.started is not None
    arms = (state.incumbent_id, state.started.baseline_candidate_id)
    tried: dict[tuple[str, int], list[RunRecord]] = defaultdict(list)
    for cid in arms:
        for run in holdback.runs_of(state, cid, finished_only=False):
            tried[(cid, run.seed)].append(run)
    specs: list[RunSpec] = []
    kept = 0
    for seed in holdback.seeds(state, state.incumbent_id, 2 * count):
        if kept >= count:
            break
        runs = {cid: tried.get((cid, seed), []) for cid in arms}
        if any(len(r) >= MAX_INCUMBENT_ATTEMPTS and not _live(r) for r in runs.values()):
            continue
        kept += 1
        specs += [RunSpec(cid, holdback.ROLE, seed) for cid in arms if not _live(runs[cid])]
    return specs


def _live(runs: list[RunRecord]) -> bool:
    return any(r.status in ("finished", "running") for r in runs)


def attempt(state: CampaignState, index: RunIndex, spec: RunSpec) -> int:
    """The attempt a new run of `spec` starts as: 1 + its earlier runs on its seed (a run is specified again only
    when all of those failed). A retry counts its attempts so a domain can vary what a retry may vary (the
    marketing domain draws new traffic)."""
    if spec.role == "incumbent":
        return 1 + len(index.incumbent_failures(spec.candidate_id, spec.seed))
    if spec.role == "holdback":
        return 1 + sum(r.seed == spec.seed for r in holdback.runs_of(state, spec.candidate_id, finished_only=False))
    return 1 + len(index.seed_runs(spec.hypothesis_id, spec.seed))


def failing_incumbent(index: RunIndex, specs: list[RunSpec]) -> str | None:
    """Why the campaign must pause when a needed incumbent run keeps failing on its seed, else None."""
    for spec in specs:
        failures = index.incumbent_failures(spec.candidate_id, spec.seed) if spec.role == "incumbent" else []
        if len(failures) >= MAX_INCUMBENT_ATTEMPTS:
            last = failures[-1]
            return (f"the incumbent {spec.candidate_id[:12]} failed {len(failures)} times on seed {spec.seed} "
                    f"(last: {last.status}: {last.error[:200]}); fix the cause, then `ledgerlab resume`")
    return None


def windows(specs: list[RunSpec], per_run: int, wait_for_more: bool) -> list[list[RunSpec]]:
    """The runs to start, grouped into what shares one run (one traffic window), in order.

    Concurrent designs with `per_run` > 1 (A/B/n or factorial runs): candidate runs against the same
    incumbent go together, up to `per_run` distinct candidates per window (a candidate twice in one window
    would count the visitors it is compared with twice); with `wait_for_more`, a window not yet full waits
    for the candidates still being proposed. Every other run is alone.
    """
    if per_run <= 1:
        return [[spec] for spec in specs]

    def shared(spec: RunSpec) -> bool:
        return spec.role == "candidate" and spec.control_id is not None

    groups: list[list[RunSpec]] = []
    for spec in specs:
        group = next((g for g in groups if shared(spec) and shared(g[0]) and g[0].control_id == spec.control_id
                      and len(g) < per_run and all(s.candidate_id != spec.candidate_id for s in g)), None)
        if group is None:
            groups.append([spec])
        else:
            group.append(spec)
    return [g for g in groups if not (wait_for_more and shared(g[0]) and len(g) < per_run)]


def _accepting_hypothesis(state: CampaignState, candidate_id: str) -> str | None:
    pair = state.candidate_parent.get(candidate_id)
    return pair[1] if pair else None


def _incumbent_spec(index: RunIndex, candidate_id: str, seed: int, hypothesis_id: str | None,
                    control_id: str | None) -> list[RunSpec]:
    if index.incumbent_run(candidate_id, seed) is not None:
        return []
    return [RunSpec(candidate_id, "incumbent", seed, hypothesis_id, control_id)]


def _hypothesis_specs(state: CampaignState, design: str, index: RunIndex, record: HypothesisRecord,
                      need: int, offset: int, window: int) -> list[RunSpec]:
    assert record.candidate_id is not None
    parent = record.parent_candidate_id
    base = state.seed_base.get(parent, 0)
    started = {run.seed for run in index.by_hypothesis.get(record.hypothesis_id, [])}
    # Seeds already run count toward `need` wherever they are (a campaign resumed under other settings).
    order = rotation_seeds(base, offset, max(window, need)) if design == "independent" else \
        list(range(base, base + need))
    if used := index.seeds_tested_before(record):
        # A re-test (an import this campaign had rejected as its own idea) gets data its first test did not
        # see: a seed replays its visitors (A/B) or its training run (independent, deterministic per seed).
        # Past `order`, need + len(used) seeds hold at least `need` unused ones; the order stays stable as need grows.
        beyond = range(base + len(order), base + len(order) + need + len(used))
        order = [seed for seed in [*order, *beyond] if seed not in used]
    seeds = [seed for seed in order if seed in started][:need]
    seeds += [seed for seed in order if seed not in started][: need - len(seeds)]
    specs: list[RunSpec] = []
    for seed in seeds:
        if design == "independent":
            specs += _incumbent_spec(index, parent, seed, None, None)
        if seed not in started or index.retry_due(record.hypothesis_id, seed):
            control = parent if design == "concurrent" else None
            specs.append(RunSpec(record.candidate_id, "candidate", seed, record.hypothesis_id, control))
    return specs


# ------------------------------------------------------------------------------------------- evidence


def candidate_runs(index: RunIndex, record: HypothesisRecord) -> list[RunRecord]:
    """The hypothesis's candidate runs, one per seed in seed order: the live one (finished or running) where a
    void run was run again, else the latest (each run is its latest attempt)."""
    by_seed: dict[int, RunRecord] = {}
    for run in index.by_hypothesis.get(record.hypothesis_id, []):  # in the order they started
        kept = by_seed.get(run.seed)
        if kept is None or kept.status not in ("finished", "running"):
            by_seed[run.seed] = run
    return [by_seed[seed] for seed in sorted(by_seed)]


def evidence_for(state: CampaignState, design: str, index: RunIndex, record: HypothesisRecord,
                 metric: MetricSpec) -> Evidence | None:
    """The judge's evidence once every started run of the hypothesis (and its partners) finished, else None."""
    runs = candidate_runs(index, record)
    if not runs or any(r.status != "finished" for r in runs):
        return None
    if design == "concurrent":
        return concurrent_evidence(runs, metric)
    parent = record.parent_candidate_id
    partners = [index.incumbent_run(parent, r.seed) for r in runs]
    if any(p is None or p.status != "finished" for p in partners):
        return None
    pairs = tuple((float(r.value), float(p.value)) for r, p in zip(runs, partners))  # type: ignore[arg-type,union-attr]
    seeds = {r.seed for r in runs}
    others = tuple(
        float(run.value) for (cid, seed), group in index.incumbent.items() if cid == parent and seed not in seeds
        for run in group if run.status == "finished" and run.value is not None
    )
    return Evidence(metric=metric, design="independent", pairs=pairs, incumbent_only=others,
                    history_diffs=_history_diffs(state, index, record.hypothesis_id),
                    history_replicates=_history_replicates(index, exclude=record.candidate_id))


def arm_metrics(design: str, index: RunIndex, record: HypothesisRecord) -> list[tuple[dict, dict]]:
    """(candidate, incumbent) run metrics of a hypothesis's finished runs, for its guardrails.

    Concurrent designs: each run's two arms. Independent designs: the candidate's runs, and every finished
    run of the incumbent it was tested against (one side empty), so a one-run candidate is still checked.
    """
    finished = [run for run in candidate_runs(index, record) if run.status == "finished"]
    if design == "concurrent":
        return [(run.metrics, run.control_metrics) for run in finished]
    parent = record.parent_candidate_id
    incumbent = [run for (cid, _), runs in index.incumbent.items() if cid == parent for run in runs
                 if run.status == "finished"]
    return [(run.metrics, {}) for run in finished] + [({}, run.metrics) for run in incumbent]


def concurrent_evidence(runs: list[RunRecord], metric: MetricSpec) -> Evidence:
    """Same-window A/B runs as evidence: counts (proportions), per-unit sums, or per-run value pairs."""
    if metric.kind == "proportion":
        counts = tuple(
            (int(r.metrics["successes"]), int(r.metrics["trials"]),
             int(r.control_metrics["successes"]), int(r.control_metrics["trials"]))
            for r in runs
        )
        return Evidence(metric=metric, design="concurrent", counts=counts)
    pairs = tuple((float(r.value), float(r.control_value)) for r in runs)  # type: ignore[arg-type]
    if metric.sums:  # pairs stay for the greedy judge, which compares one run's values
        sums = tuple(tuple(float(arm[key]) for arm in (r.metrics, r.control_metrics) for key in metric.sums)
                     for r in runs)
        return Evidence(metric=metric, design="concurrent", sums=sums, pairs=pairs)
    return Evidence(metric=metric, design="concurrent", pairs=pairs)


def history(state: CampaignState) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """Every decided hypothesis's paired differences, and every incumbent's replicates: the judge's pools."""
    index = RunIndex.of(state)
    return _history_diffs(state, index, None), _history_replicates(index, exclude=None)


def _history_diffs(state: CampaignState, index: RunIndex, exclude: str | None) -> tuple[tuple[float, ...], ...]:
    """Other decided hypotheses' paired differences (candidate − incumbent): the pooled variance's history."""
    groups = []
    for other in state.hypotheses.values():
        if other.hypothesis_id == exclude or other.verdict is None:
            continue
        diffs = []
        for run in index.by_hypothesis.get(other.hypothesis_id, []):
            partner = index.incumbent_run(other.parent_candidate_id, run.seed)
            if run.status == "finished" and partner is not None and partner.status == "finished":
                diffs.append(float(run.value) - float(partner.value))  # type: ignore[arg-type]
        if diffs:
            groups.append(tuple(diffs))
    return tuple(groups)


def _history_replicates(index: RunIndex, exclude: str | None) -> tuple[tuple[float, ...], ...]:
    """Finished values grouped by candidate (incumbent replicates): the single-run variance's history."""
    groups: dict[str, list[float]] = defaultdict(list)
    for (cid, _seed), runs in index.incumbent.items():
        if cid != exclude:
            groups[cid] += [float(r.value) for r in runs if r.status == "finished" and r.value is not None]
    return tuple(tuple(v) for v in groups.values() if len(v) >= 2)
