"""An event store in a Python list: the same contract as DuckDBLedger, for tests and simulation benchmarks.

    store = InMemoryLedger()
    store.append("c1", [CampaignPaused(reason="x")], expected_version=0)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ledgerlab.errors import ConcurrencyError
from ledgerlab.storage.events import GENESIS_HASH, Event, StoredEvent, seal


class InMemoryLedger:
    """Thread-safe in-memory event store with the same numbering and hash chain as the DuckDB ledger."""

    def __init__(self) -> None:
        self._rows: list[StoredEvent] = []
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def append(self, campaign_id: str, events: Sequence[Event], expected_version: int) -> list[StoredEvent]:
        """Append `events` to a campaign stream whose current version must be `expected_version`."""
        with self._lock:
            current = self._versions.get(campaign_id, 0)
            if current != expected_version:
                raise ConcurrencyError(stale_message(campaign_id, expected_version, current))
            if not events:
                return []
            head_seq = self._rows[-1].seq if self._rows else 0
            head_hash = self._rows[-1].hash if self._rows else GENESIS_HASH
            rows = seal(campaign_id, events, first_seq=head_seq + 1, first_version=current + 1, prev_hash=head_hash)
            self._rows.extend(rows)
            self._versions[campaign_id] = rows[-1].version
            return rows

    def read(
        self, campaign_id: str | None = None, after_seq: int = 0, types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Rows with seq > after_seq, in seq order, optionally of one campaign and some types."""
        with self._lock:
            rows = self._rows[after_seq:] if after_seq >= 0 else list(self._rows)  # seq n sits at index n-1
        wanted = set(types) if types is not None else None
        picked = [
            row for row in rows
            if (campaign_id is None or row.campaign_id == campaign_id) and (wanted is None or row.type in wanted)
        ]
        return picked if limit is None else picked[:limit]

    def version(self, campaign_id: str) -> int:
        """The campaign stream's current version (0 when it has no events)."""
        with self._lock:
            return self._versions.get(campaign_id, 0)

    def campaign_ids(self) -> list[str]:
        """Campaign ids in order of their first event."""
        with self._lock:
            return list(self._versions)

    def head(self) -> tuple[int, str]:
        """The chain head: (seq, hash) of the newest event, (0, GENESIS_HASH) when empty."""
        with self._lock:
            return (self._rows[-1].seq, self._rows[-1].hash) if self._rows else (0, GENESIS_HASH)

    def close(self) -> None:
        """Nothing to release; present for the EventStore contract."""

    def __enter__(self) -> InMemoryLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stale_message(campaign_id: str, expected: int, current: int) -> str:
    """The ConcurrencyError text both stores use."""
    return (
        f"campaign {campaign_id!r} is at version {current}, not {expected}: another writer appended first; "
        "nothing was written (re-read the stream and retry)"
    )
