"""Typed copies of the fields the views need, derived from `events` in the transaction that appends them.

`run_events` holds one row per RunStarted, RunFinished and RunFailed event: its seq, campaign, type and
time, and its payload's fields as typed columns (a start's fields, or an end's; the others NULL). The `runs`
view, and `incumbents`, `campaigns` and `leaderboard` on top of it, read this table instead of parsing
JSON: at 1M events that parsing was most of their time (bench/ledger.py).

The rules that keep it a pure function of `events`:
- it is only ever appended to, by `append_derived` inside the transaction that inserts the events it derives
  from (storage/ledger.py `_insert`), so a crash at any moment leaves both or neither;
- `backfill` derives every run event after the table's newest row, with the same SQL, when a writer opens
  the file (views.install): a ledger from a ledgerlab without this table, or rows an older ledgerlab appended
  after it, are filled in before anyone reads them. It stays complete up to its newest row, so "after the
  newest row" is exactly what is missing;
- `DROP TABLE run_events` and a writer's open rebuild it from scratch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

RUN_TYPES = ("RunStarted", "RunFinished", "RunFailed")
_START_FIELDS = {
    "run_id": "VARCHAR", "hypothesis_id": "VARCHAR", "candidate_id": "VARCHAR", "role": "VARCHAR",
    "seed": "BIGINT", "attempt": "INTEGER", "worker": "VARCHAR", "shared_window": "VARCHAR",
}
_END_FIELDS = {  # run_id is shared with the start's
    "status": "VARCHAR", "value": "DOUBLE", "control_value": "DOUBLE", "metrics": "JSON",
    "control_metrics": "JSON", "error": "VARCHAR", "duration_s": "DOUBLE", "log_path": "VARCHAR",
}
# No PRIMARY KEY: DuckDB indexes cost every append and are not copied into snapshots; `backfill` and
# `append_derived` each derive a seq once (tests/test_storage_derived.py checks against a rebuild).
RUN_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS run_events (\n"
    "    seq BIGINT NOT NULL, campaign_id VARCHAR NOT NULL, type VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL,\n"
    + ",\n".join(f"    {name} {kind}" for name, kind in {**_START_FIELDS, **_END_FIELDS}.items())
    + "\n)"
)


def _struct(fields: dict[str, str]) -> str:
    """A json_transform structure: field name -> DuckDB type."""
    return "{" + ",".join(f'"{name}":"{kind}"' for name, kind in fields.items()) + "}"


def derive_sql(where: str = "TRUE", source: str = "events") -> str:
    """SELECT of `run_events` rows from the rows of `source` that match `where` (SQL over its columns).

    One equality scan per type: `type = 'X'` is pushed into the scan, which then parses matching payloads only.
    """
    starts = _struct(_START_FIELDS)
    ends = _struct({"run_id": "VARCHAR", **_END_FIELDS})
    start_cols = ", ".join(f"p.{name}" for name in _START_FIELDS)
    end_cols = ", ".join(f"p.{name}" for name in _END_FIELDS)
    no_end = ", ".join(f"NULL::{kind}" for kind in _END_FIELDS.values())
    no_start = ", ".join(f"NULL::{kind}" for name, kind in _START_FIELDS.items() if name != "run_id")
    head = "SELECT seq, campaign_id, type, recorded_at"
    parts = [f"{head}, {start_cols}, {no_end} FROM (SELECT seq, campaign_id, type, recorded_at, "
             f"json_transform(payload, '{starts}') AS p FROM {source} WHERE type = 'RunStarted' AND ({where}))"]
    parts += [f"{head}, p.run_id, {no_start}, {end_cols} FROM (SELECT seq, campaign_id, type, recorded_at, "
              f"json_transform(payload, '{ends}') AS p FROM {source} WHERE type = '{kind}' AND ({where}))"
              for kind in RUN_TYPES[1:]]
    return "\nUNION ALL\n".join(parts)


def append_derived(con: duckdb.DuckDBPyConnection, first_seq: int, last_seq: int) -> None:
    """Derive the rows of events first_seq..last_seq (just inserted, same transaction) into `run_events`."""
    sql = derive_sql(f"seq BETWEEN {int(first_seq)} AND {int(last_seq)}")
    con.execute(f"INSERT INTO run_events {sql}")


def backfill(con: duckdb.DuckDBPyConnection) -> None:
    """Create `run_events` if missing and derive every run event after its newest row (in the caller's transaction)."""
    con.execute(RUN_EVENTS_DDL)
    newest = con.execute("SELECT coalesce(max(seq), 0) FROM run_events").fetchone()[0]  # type: ignore[index]
    con.execute(f"INSERT INTO run_events {derive_sql(f'seq > {int(newest)}')} ORDER BY seq")
