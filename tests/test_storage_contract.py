"""The EventStore contract, run against every implementation (like optuna's storage test suite)."""

from __future__ import annotations

import threading

import pytest
from fixtures_events import MAX, MIN, append_stream, fixture_stream

from ledgerlab.errors import ConcurrencyError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import EventStore
from ledgerlab.storage.verify import verify_events


def paused(n: int) -> list[ev.Event]:
    return [ev.CampaignPaused(reason=f"p{i}") for i in range(n)]


def test_is_an_event_store(store: EventStore) -> None:
    assert isinstance(store, EventStore)


def test_empty_store(store: EventStore) -> None:
    assert store.read() == [] and store.version("x") == 0 and store.campaign_ids() == []


def test_append_numbers_versions_and_seq(store: EventStore) -> None:
    first = store.append("a", paused(2), expected_version=0)
    second = store.append("b", paused(1), expected_version=0)
    third = store.append("a", paused(3), expected_version=2)
    assert [r.version for r in first + third] == [1, 2, 3, 4, 5]
    assert [r.seq for r in store.read()] == [1, 2, 3, 4, 5, 6]
    assert second[0].version == 1 and store.version("a") == 5 and store.version("b") == 1
    assert store.campaign_ids() == ["a", "b"]
    assert len({r.event_id for r in store.read()}) == 6


def test_read_filters(store: EventStore) -> None:
    append_stream(store, fixture_stream())
    everything = store.read()
    assert [r.seq for r in everything] == list(range(1, len(everything) + 1))
    mins = store.read(campaign_id=MIN)
    assert [r.version for r in mins] == list(range(1, len(mins) + 1))
    assert {r.campaign_id for r in store.read(campaign_id=MAX)} == {MAX}
    assert [r.seq for r in store.read(after_seq=40)] == list(range(41, len(everything) + 1))
    runs = store.read(types=["RunFinished", "RunFailed"], limit=3)
    assert len(runs) == 3 and {r.type for r in runs} <= {"RunFinished", "RunFailed"}
    assert store.read(types=[]) == []


def test_round_trip_payloads(store: EventStore) -> None:
    stream = fixture_stream()
    append_stream(store, stream)
    assert [row.event() for row in store.read()] == [event for _, event in stream]
    assert all(row.recorded_at.utcoffset() is not None for row in store.read())


def test_stale_version_writes_nothing(store: EventStore) -> None:
    store.append("a", paused(2), expected_version=0)
    before = store.read()
    for stale in (0, 1, 3):
        with pytest.raises(ConcurrencyError, match="version 2"):
            store.append("a", paused(2), expected_version=stale)
    assert store.read() == before and store.version("a") == 2


def test_batch_is_atomic(store: EventStore) -> None:
    rows = store.append("a", paused(50), expected_version=0)
    assert [r.version for r in rows] == list(range(1, 51))
    assert store.read() == rows and len({r.recorded_at for r in rows}) == 1


def test_hash_chain_is_valid(store: EventStore) -> None:
    append_stream(store, fixture_stream())
    store.append(MIN, paused(5), expected_version=store.version(MIN))
    rows = store.read()
    assert rows[0].prev_hash == ev.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    result = verify_events(rows)
    assert result.ok and result.count == len(rows)


def test_head_is_the_newest_row(store: EventStore) -> None:
    assert store.head() == (0, ev.GENESIS_HASH)  # type: ignore[attr-defined]
    rows = store.append("a", paused(3), expected_version=0)
    assert store.head() == (3, rows[-1].hash)  # type: ignore[attr-defined]


def test_stored_rows_are_encode_and_row_hash(store: EventStore) -> None:
    """seal's inlined encoding and hashing (the hot path) agree with the one canonical definition."""
    append_stream(store, fixture_stream())
    for row in store.read():
        assert (row.type, row.schema_version, row.payload) == ev.encode(row.event())
        assert row.hash == ev.row_hash(row.prev_hash, row.seq, row.event_id, row.campaign_id, row.version, row.type,
                                       row.schema_version, row.payload, row.recorded_at)


def test_racing_writers_one_wins(store: EventStore) -> None:
    errors: list[Exception] = []

    def write() -> None:
        try:
            store.append("a", paused(3), expected_version=0)
        except ConcurrencyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 3 and store.version("a") == 3 and verify_events(store.read()).ok
