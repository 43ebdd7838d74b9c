"""Typed copies of the fields the views need, derived from `events` in the transaction that appends them.

- `run_events`: one row per RunStarted, RunFinished and RunFailed event: its payload's fields as typed
  columns (a start's fields, or an end's; the others NULL). `runs` reads it, and `incumbents`, `campaigns`
  and `leaderboard` through `runs`.
- `hypothesis_events`: one row per HypothesisProposed, PatchRejected, CandidateCreated, VerdictReached and
  IncumbentChanged event: the ids that link hypotheses, candidates, verdicts and incumbents, a verdict's
  decision and a rejection's reason (a proposal's text, diff and a verdict's statistics stay in `events`).

Each row also has the event's seq, campaign_id, type and recorded_at. At 1M events, parsing those payloads
on every query was most of the views' time (bench/ledger.py).

The rules that keep them a pure function of `events`:
- they are only ever appended to, by `append_derived` inside the transaction that inserts the events they
  derive from (storage/ledger.py `_insert`), so a crash at any moment leaves both or neither;
- `backfill` derives every event after a table's newest row, with the same SQL, when a writer opens the
  file (views.install): a ledger from a ledgerlab without these tables, or rows an older ledgerlab appended
  after them, are filled in before anyone reads them. A table stays complete up to its newest row, so "after
  the newest row" is exactly what is missing;
- `DROP TABLE` of either and a writer's open rebuild it from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

_COMMON = "seq BIGINT NOT NULL, campaign_id VARCHAR NOT NULL, type VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL"


@dataclass(frozen=True)
class Derived:
    """A derived table: its typed columns, and per event type the columns its payload fills."""

    table: str
    columns: dict[str, str]  # name -> DuckDB type, after the common four
    fills: dict[str, tuple[str, ...]]  # event type -> the columns its payload has

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Every column, the common four first, in table order."""
        return ("seq", "campaign_id", "type", "recorded_at", *self.columns)

    def ddl(self, name: str | None = None) -> str:
        """CREATE TABLE IF NOT EXISTS, under `name` (default: the table's own)."""
        columns = ", ".join(f"{column} {kind}" for column, kind in self.columns.items())
        return f"CREATE TABLE IF NOT EXISTS {name or self.table} ({_COMMON}, {columns})"

    def select(self, where: str = "TRUE", source: str = "events") -> str:
        """SELECT of this table's rows from the rows of `source` that match `where` (SQL over its columns).

        One statement with one json_transform of every column: planning it is most of what an append pays, and
        a column a type does not fill is NULL for that type whatever its payload holds.
        """
        shape = "{" + ",".join(f'"{column}":"{kind}"' for column, kind in self.columns.items()) + "}"
        values = []
        for column in self.columns:
            types = [event_type for event_type, filled in self.fills.items() if column in filled]
            values.append(f"CASE WHEN type IN ({_quoted(types)}) THEN p.{column} END AS {column}")
        return (f"SELECT seq, campaign_id, type, recorded_at, {', '.join(values)} FROM (SELECT seq, campaign_id, "
                f"type, recorded_at, json_transform(payload, '{shape}') AS p FROM {source} "
                f"WHERE type IN ({_quoted(self.fills)}) AND ({where}))")


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


_START = ("run_id", "hypothesis_id", "candidate_id", "role", "seed", "attempt", "worker", "shared_window")
_END = ("run_id", "status", "value", "control_value", "metrics", "control_metrics", "error", "duration_s", "log_path")
RUN_EVENTS = Derived(
    "run_events",
    {"run_id": "VARCHAR", "hypothesis_id": "VARCHAR", "candidate_id": "VARCHAR", "role": "VARCHAR",
     "seed": "BIGINT", "attempt": "INTEGER", "worker": "VARCHAR", "shared_window": "VARCHAR",
     "status": "VARCHAR", "value": "DOUBLE", "control_value": "DOUBLE", "metrics": "JSON",
     "control_metrics": "JSON", "error": "VARCHAR", "duration_s": "DOUBLE", "log_path": "VARCHAR"},
    {"RunStarted": _START, "RunFinished": _END, "RunFailed": _END},
)
HYPOTHESIS_EVENTS = Derived(
    "hypothesis_events",
    {"hypothesis_id": "VARCHAR", "candidate_id": "VARCHAR", "parent_candidate_id": "VARCHAR",
     "previous_candidate_id": "VARCHAR", "seed_base": "BIGINT", "decision": "VARCHAR", "reason": "VARCHAR"},
    {"HypothesisProposed": ("hypothesis_id", "parent_candidate_id"),
     "PatchRejected": ("hypothesis_id", "reason"),
     "CandidateCreated": ("hypothesis_id", "candidate_id", "parent_candidate_id"),
     "VerdictReached": ("hypothesis_id", "decision", "reason"),
     "IncumbentChanged": ("hypothesis_id", "candidate_id", "previous_candidate_id", "seed_base")},
)
DERIVED = (RUN_EVENTS, HYPOTHESIS_EVENTS)
DERIVED_TYPES = frozenset(event_type for derived in DERIVED for event_type in derived.fills)


def append_derived(con: duckdb.DuckDBPyConnection, types: Iterable[str], first_seq: int, last_seq: int) -> None:
    """Derive the rows of events first_seq..last_seq (just inserted, same transaction; of `types`)."""
    present = set(types)
    for derived in DERIVED:
        if present.intersection(derived.fills):
            where = f"seq BETWEEN {int(first_seq)} AND {int(last_seq)}"
            con.execute(f"INSERT INTO {derived.table} {derived.select(where)}")


def backfill(con: duckdb.DuckDBPyConnection) -> None:
    """Create the derived tables if missing and derive every event after each one's newest row (caller's tx)."""
    for derived in DERIVED:
        con.execute(derived.ddl())
        newest = con.execute(f"SELECT coalesce(max(seq), 0) FROM {derived.table}").fetchall()[0][0]
        con.execute(f"INSERT INTO {derived.table} {derived.select(f'seq > {int(newest)}')} ORDER BY seq")
