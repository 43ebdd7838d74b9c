"""Check the ledger's tamper-evident chain: seq is 1..N without gaps, each row links to and hashes as it should.

An UPDATE out of band breaks the row's hash; a DELETE leaves a seq gap; an INSERT out of band fails its
hash or link. (Deleting the newest rows cannot be seen from the chain alone: nothing after them links back.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledgerlab.core.errors import IntegrityError
from ledgerlab.storage.events import GENESIS_HASH, TIME_FORMAT, StoredEvent, row_hash

if TYPE_CHECKING:
    import duckdb

# The canonical row of storage/events.py `canonical_row`, in SQL (DuckDB strftime's %f is 6 digits too).
CANONICAL_SQL = (
    "concat_ws('|', prev_hash, seq::VARCHAR, event_id, campaign_id, version::VARCHAR, type, "
    f"schema_version::VARCHAR, payload::VARCHAR, strftime(recorded_at, '{TIME_FORMAT}'))"
)
_FIRST_BAD = f"""
WITH chain AS (
    SELECT seq, prev_hash, hash,
           row_number() OVER (ORDER BY seq) AS position,
           lag(seq) OVER (ORDER BY seq) AS previous_seq,
           lag(hash, 1, '{GENESIS_HASH}') OVER (ORDER BY seq) AS previous_hash,
           sha256({CANONICAL_SQL}) AS recomputed
    FROM events
)
SELECT seq, position, previous_seq, prev_hash = previous_hash AS linked, hash = recomputed AS hashed
FROM chain
WHERE seq <> position OR prev_hash <> previous_hash OR hash <> recomputed
ORDER BY seq LIMIT 1
"""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a chain check."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return f"{self.count} events, chain intact"
        return f"chain broken at seq {self.first_bad_seq}: {self.reason} ({self.count} events)"

    def raise_if_broken(self) -> None:
        """Raise IntegrityError naming the first bad seq."""
        if not self.ok:
            raise IntegrityError(self.summary(), seq=self.first_bad_seq)


def verify_connection(con: duckdb.DuckDBPyConnection) -> VerifyResult:
    """Check the chain in SQL over an open connection."""
    count = int(con.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
    bad = con.execute(_FIRST_BAD).fetchone()
    if bad is None:
        return VerifyResult(ok=True, count=count)
    seq, position, previous_seq, linked, hashed = bad
    if seq != position:
        after = f"after seq {previous_seq}" if previous_seq is not None else "first row"
        reason = f"seq {seq} where {position} was expected ({after}): rows missing or inserted out of band"
    elif not linked:
        reason = "prev_hash does not match the previous row's hash"
    else:
        reason = "hash does not match the row's contents (changed after it was written)"
    return VerifyResult(ok=False, count=count, first_bad_seq=int(seq), reason=reason)


def verify_ledger(path: str | os.PathLike[str], wait_s: float | None = None) -> VerifyResult:
    """Check the chain of the ledger file at `path` (read-only)."""
    from ledgerlab.storage.ledger import read_only_connection

    with read_only_connection(path, wait_s=wait_s) as con:
        return verify_connection(con)


def verify_events(rows: Iterable[StoredEvent]) -> VerifyResult:
    """Check the chain in Python over rows in seq order (any EventStore's `read()`)."""
    previous, count = GENESIS_HASH, 0
    for count, row in enumerate(rows, start=1):
        fields = (row.prev_hash, row.seq, row.event_id, row.campaign_id, row.version, row.type,
                  row.schema_version, row.payload, row.recorded_at)
        if row.seq != count:
            return VerifyResult(False, count, row.seq, f"seq {row.seq} where {count} was expected")
        if row.prev_hash != previous:
            return VerifyResult(False, count, row.seq, "prev_hash does not match the previous row's hash")
        if row_hash(*fields) != row.hash:
            return VerifyResult(False, count, row.seq, "hash does not match the row's contents")
        previous = row.hash
    return VerifyResult(ok=True, count=count)
