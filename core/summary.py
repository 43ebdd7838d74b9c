"""One campaign read from the ledger and summed up, the one way every reader does it.

    summary = summarize(Project.at(directory), campaign=None)   # the latest started campaign
    summary.state, summary.report, summary.head_seq
    chart = progress(summary.state)                              # what `ledgerlab plot` and the dashboard draw

`ledgerlab status`, `show`, `hypotheses`, `checkout`, `export` and `plot` (cli/) and `ledgerlab.open(...)`'s
`snapshot` (api.py, the dashboard) read a campaign through `read_campaign`, fold it with core/state.py and
report it with core/report.py's `status_report`: the CLI and the API never disagree on a number. The charts'
incumbent line uses core/effects.py's rule for the runs that measure an incumbent (`is_fresh`), the rule
`status` uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerlab.core.state import CampaignState
from ledgerlab.errors import CampaignError

if TYPE_CHECKING:
    from ledgerlab.core.project import Project
    from ledgerlab.core.state import HypothesisRecord, RunRecord

# The events of one campaign and the ledger's head in one statement, so both are read at the same moment.
_EVENTS_SQL = ("SELECT seq, event_id, campaign_id, version, type, schema_version, payload, recorded_at, prev_hash,"
               " hash, (SELECT max(seq) FROM events) FROM events WHERE campaign_id = ? ORDER BY seq")


# ---------------------------------------------------------------------------------------------- reading


def read_campaign(ledger_path: Path, campaign: str | None, *, wait_s: float | None = None) -> tuple[CampaignState, int]:
    """The chosen campaign (id or prefix; default the latest started) folded, and the ledger's head seq then.

    Read through a read-only connection closed before returning, so it works while a campaign is writing.
    """
    from ledgerlab.storage.ledger import read_only_connection, to_stored
    from ledgerlab.storage.query import pick_campaign

    with read_only_connection(ledger_path, wait_s=wait_s) as con:
        campaign_id = pick_campaign(con, campaign)
        rows = con.execute(_EVENTS_SQL, [campaign_id]).fetchall()
    state = CampaignState(campaign_id=campaign_id)
    for row in rows:
        state.apply(to_stored(row[:10]))
    if state.started is None:
        raise CampaignError(f"campaign {campaign_id} has no CampaignStarted event yet; start one with `ledgerlab run`")
    return state, int(rows[-1][10]) if rows else 0


@dataclass
class CampaignSummary:
    """One campaign folded from its events at one moment, with `ledgerlab status`'s report of it."""

    state: CampaignState
    report: dict[str, Any]  # core/report.py's status_report: what `ledgerlab status --format json` prints
    head_seq: int  # the ledger's last event when it was read

    # The stream's facts the fold keeps, under the names api.py's CampaignSnapshot has always had.
    @property
    def finish_order(self) -> list[str]:
        """Run ids in the order their RunFinished came."""
        return self.state.finish_order

    @property
    def incumbent_at(self) -> list[tuple[int, str]]:
        """Each incumbent, with how many runs had finished when it took over (the baseline first)."""
        return self.state.incumbent_at

    @property
    def run_started_at(self) -> dict[str, datetime]:
        """When each run's latest attempt started."""
        return run_started_at(self.state)

    @property
    def unpriced_calls(self) -> int:
        """LLM calls whose cost is unknown (not counted in the spend)."""
        return self.state.unpriced_calls

    @property
    def durations(self) -> dict[str, float]:
        """Finished runs' wall time in seconds, as their executors measured it."""
        return {r.run_id: r.duration_s for r in self.state.runs.values() if r.duration_s is not None}


def summarize(project: Project, campaign: str | None, *, wait_s: float | None = None,
              lock: AbstractContextManager[Any] | None = None) -> CampaignSummary:
    """Read one campaign (`read_campaign`) and report it as `ledgerlab status` does.

    `lock`: held around the read (api.py's one-read-at-a-time per ledger file in a process).
    """
    from ledgerlab.core.report import status_report
    from ledgerlab.core.runner_lock import runner_alive
    from ledgerlab.storage.events import utc_now

    # Probed before and after reading, so a runner that starts or ends meanwhile is never taken for a dead one.
    before = runner_alive(project)
    with lock or nullcontext():
        state, head = read_campaign(project.ledger_path, campaign, wait_s=wait_s)
    after = runner_alive(project)
    alive = None if before is None or after is None else before or after
    report = status_report(state, now=utc_now(), run_started_at=run_started_at(state),
                           unpriced_calls=state.unpriced_calls, runner_alive=alive)
    return CampaignSummary(state, report, head)


def run_started_at(state: CampaignState) -> dict[str, datetime]:
    """When each run's latest attempt started (the RunStarted the fold kept)."""
    return {r.run_id: r.started_at for r in state.runs.values() if r.started_at is not None}


# ---------------------------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Point:
    """One finished run on the progress chart."""

    x: int  # its place among the finished runs, from 1
    value: float
    run: RunRecord
    series: str  # a hypothesis's candidate run: that hypothesis's status; any other: "<role> runs"
    hypothesis: HypothesisRecord | None  # the hypothesis it tests (candidate runs) or confirms, if any


@dataclass(frozen=True)
class Progress:
    """`ledgerlab plot`'s and the dashboard's chart: every finished run in order and the incumbent's level."""

    points: tuple[Point, ...]
    # After each finished run: the incumbent's value then (the mean of its runs after selection, or of all its
    # finished runs until there are some, as `status` values it), None while it has none.
    incumbent: tuple[float | None, ...]
    changes: tuple[tuple[int, float, int], ...]  # (x, incumbent value, hypothesis number) of each accept

    def series(self) -> dict[str, list[Point]]:
        """The points by series, in the order each series first appears."""
        out: dict[str, list[Point]] = {}
        for point in self.points:
            out.setdefault(point.series, []).append(point)
        return out


def progress(state: CampaignState) -> Progress:
    """The progress chart of a folded campaign (its runs' values as they stand in the fold)."""
    from ledgerlab.core.effects import is_fresh, mean

    points: list[Point] = []
    line: list[float | None] = []
    changes = list(state.incumbent_at)
    current = changes[0][1] if changes else state.incumbent_id
    seen: set[str] = set()
    every: dict[str, list[float]] = {}  # every finished run of each candidate so far
    fresh: dict[str, list[float]] = {}  # its runs as incumbent after selection (no winner's curse)
    for i, run_id in enumerate(state.finish_order):
        while changes and changes[0][0] <= i:
            current = changes.pop(0)[1]
        run = state.runs.get(run_id)
        if run is not None and run.value is not None and run_id not in seen:
            seen.add(run_id)
            points.append(_point(state, i + 1, run.value, run))
            every.setdefault(run.candidate_id, []).append(run.value)
            if is_fresh(state, run):
                fresh.setdefault(run.candidate_id, []).append(run.value)
        line.append(mean(fresh.get(current) or every.get(current) or []))
    return Progress(tuple(points), tuple(line), tuple(_changes(state, line)))


def _point(state: CampaignState, x: int, value: float, run: RunRecord) -> Point:
    hyp = state.hypotheses.get(run.hypothesis_id or "")
    series = hyp.status if hyp is not None and run.role == "candidate" else f"{run.role} runs"
    return Point(x, value, run, series, hyp)


def _changes(state: CampaignState, line: list[float | None]) -> Iterator[tuple[int, float, int]]:
    """Each change of incumbent to a hypothesis's candidate, where the line shows it (from the next run on)."""
    for position, cid in state.incumbent_at[1:]:
        origin = state.candidate_parent.get(cid)
        if origin and origin[1] in state.hypotheses and position < len(line):
            y = line[position]
            if y is not None:
                yield position + 1, y, state.hypotheses[origin[1]].number
