"""Check the ledger: its hash chain, its signed checkpoints, and a head the user kept elsewhere.

The chain: seq is 1..N without gaps, each row links to and hashes as it should. An UPDATE out of band breaks
the row's hash; a DELETE leaves a seq gap; an INSERT out of band fails its hash or link. But the chain has no
secret: whoever rewrites a row can recompute every later hash (`events.row_hash`). The checkpoints: each
CheckpointSigned must carry a valid signature (storage/signing.py) by a trusted key over the hash the chain has
at its head_seq, so a rewrite up to the last checkpoint needs the key. Deleting the newest rows (checkpoints
included) shows in neither: only a head kept elsewhere (`verify_report(..., head=...)`) reveals it.
The derived tables the views read (storage/derived.py) are outside the chain: `verify_report` rebuilds them
from the events and compares, so what the views show is what the chain holds.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledgerlab.errors import IntegrityError
from ledgerlab.storage.events import (
    GENESIS_HASH,
    TIME_FORMAT,
    CheckpointSigned,
    StoredEvent,
    decode,
    row_hash,
)

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


# ------------------------------------------------------------------------------------- checkpoints

_CHECKPOINTS = """
SELECT c.seq, c.schema_version, c.payload::VARCHAR, h.hash
FROM events c LEFT JOIN events h ON h.seq = TRY_CAST(c.payload->>'head_seq' AS BIGINT) AND h.seq < c.seq
WHERE c.type = 'CheckpointSigned' ORDER BY c.seq
"""


@dataclass(frozen=True)
class CheckpointCheck:
    """One CheckpointSigned event, checked; `problems` is empty when it holds."""

    seq: int
    head_seq: int
    key_id: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return f"checkpoint at seq {self.seq} (head seq {self.head_seq}): {'; '.join(self.problems) or 'valid'}"


def check_checkpoint(seq: int, schema_version: int, payload: str, chain_hash: str | None,
                     trusted: Collection[str]) -> CheckpointCheck:
    """Check one stored checkpoint against the chain's hash at its head_seq and the trusted public keys."""
    from ledgerlab.storage.signing import key_id, signature_valid

    try:
        event = decode("CheckpointSigned", schema_version, payload)
        kid = key_id(event.public_key)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - whatever an editor wrote there, it is not a checkpoint
        event = None
    if not isinstance(event, CheckpointSigned):  # also a payload whose own `type` names another event
        return CheckpointCheck(seq, 0, "?", ("the payload is not a readable checkpoint",))
    problems = []
    if not signature_valid(event):
        problems.append("the signature does not verify (the checkpoint was altered)")
    if chain_hash is None:
        problems.append(f"it signs seq {event.head_seq}, which the ledger does not hold before it")
    elif chain_hash != event.head_hash:
        problems.append(f"the signed head hash differs from the chain's at seq {event.head_seq}: "
                        f"an event up to seq {event.head_seq} was changed, its later hashes recomputed")
    if event.public_key not in trusted:
        problems.append(f"signed by an unknown key {kid}")
    return CheckpointCheck(seq, event.head_seq, kid, tuple(problems))


def verify_checkpoints(con: duckdb.DuckDBPyConnection, trusted: Collection[str]) -> tuple[CheckpointCheck, ...]:
    """Check every CheckpointSigned in the ledger, in seq order."""
    rows = con.execute(_CHECKPOINTS).fetchall()
    return tuple(check_checkpoint(int(seq), int(version), payload, chain_hash, trusted)
                 for seq, version, payload, chain_hash in rows)


# --------------------------------------------------------------------------------- the whole report


@dataclass(frozen=True)
class HeadCheck:
    """Where a head kept elsewhere sits in the chain (seq None: not in it)."""

    head: str
    seq: int | None
    following: int = 0

    @property
    def ok(self) -> bool:
        return self.seq is not None

    def summary(self) -> str:
        if self.seq is None:
            return (f"head {self.head} is not in the ledger: the events up to it were deleted (truncated) or "
                    "rewritten")
        return f"head {self.head[:16]}… is seq {self.seq}; {self.following} events follow it"


@dataclass(frozen=True)
class DerivedCheck:
    """A derived table compared with its rebuild from the events (rows: None when it is not made yet)."""

    table: str
    rows: int | None
    missing: int = 0
    extra: int = 0

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0

    def summary(self) -> str:
        if self.rows is None:
            return f"{self.table} not made yet (the next ledgerlab that writes the ledger derives it)"
        if self.ok:
            return f"{self.table} ({_plural(self.rows, 'row')}) as rebuilt from the events"
        return (f"{self.table} differs from its rebuild from the events: {self.missing} row(s) missing, "
                f"{self.extra} from no event (edited out of band; the views read it)")


def verify_derived(con: duckdb.DuckDBPyConnection) -> tuple[DerivedCheck, ...]:
    """Rebuild each derived table from the events and count the rows it lacks and the rows it should not have."""
    from ledgerlab.storage.derived import DERIVED

    present = {row[0] for row in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()}
    checks = []
    for derived in DERIVED:
        if derived.table not in present:
            checks.append(DerivedCheck(derived.table, None))
            continue
        # Joined on seq (one row per event) and compared row by row: EXCEPT ALL hashed every column, 3x slower.
        kept, made = (f"row({', '.join(f'{side}.{c}' for c in derived.all_columns)})" for side in ("t", "r"))
        rows, lacking, foreign, changed, twice = con.execute(
            f"SELECT (SELECT count(*) FROM {derived.table}), count(*) FILTER (WHERE t.seq IS NULL), "
            f"count(*) FILTER (WHERE r.seq IS NULL), "
            f"count(*) FILTER (WHERE r.seq IS NOT NULL AND t.seq IS NOT NULL AND {kept} IS DISTINCT FROM {made}), "
            f"(SELECT count(*) - count(DISTINCT seq) FROM {derived.table}) "
            f"FROM ({derived.select()}) r FULL JOIN {derived.table} t ON t.seq = r.seq").fetchone()  # type: ignore[misc]
        checks.append(DerivedCheck(derived.table, int(rows), int(lacking + changed), int(foreign + changed + twice)))
    return tuple(checks)


SHOWN = 5  # failed checkpoints listed one per line; the rest are counted


@dataclass(frozen=True)
class LedgerReport:
    """Everything `ledgerlab verify` checks, with one line per check."""

    chain: VerifyResult
    head_seq: int
    head_hash: str
    checkpoints: tuple[CheckpointCheck, ...] = ()
    kept_head: HeadCheck | None = None
    derived: tuple[DerivedCheck, ...] = ()

    @property
    def ok(self) -> bool:
        heads = self.kept_head is None or self.kept_head.ok
        return (self.chain.ok and heads and all(c.ok for c in self.checkpoints)
                and all(d.ok for d in self.derived))

    @property
    def signed_up_to(self) -> int:
        """The newest seq a valid, trusted checkpoint covers (0: none)."""
        return max((c.head_seq for c in self.checkpoints if c.ok), default=0)

    def lines(self) -> list[tuple[bool, str]]:
        """(passed, text) per check, then the verdict."""
        out = [(self.chain.ok, f"chain: {self.chain.summary()}"), self._signatures()]
        failed = [c for c in self.checkpoints if not c.ok]
        out += [(False, f"  {c.summary()}") for c in failed[:SHOWN]]
        if len(failed) > SHOWN:
            out.append((False, f"  ... and {len(failed) - SHOWN} more failed checkpoints"))
        if self.kept_head is not None:
            out.append((self.kept_head.ok, f"head: {self.kept_head.summary()}"))
        if self.derived:
            out += [(all(d.ok for d in self.derived), "derived: " + "; ".join(d.summary() for d in self.derived))]
        out.append((True, f"current head: seq {self.head_seq} {self.head_hash} (keep it elsewhere; "
                          "`ledgerlab verify --head HASH` later shows whether the ledger was cut back)"))
        return [*out, (self.ok, self._verdict())]

    def _signatures(self) -> tuple[bool, str]:
        bad = sum(not c.ok for c in self.checkpoints)
        if not self.checkpoints:
            return True, ("signatures: no signed checkpoints: nothing shows an edit by someone who can "
                          "rewrite the file")
        if bad:
            return False, f"signatures: {bad} of {_plural(len(self.checkpoints), 'checkpoint')} failed"
        keys = ", ".join(sorted({c.key_id for c in self.checkpoints}))
        newer = self.head_seq - self.signed_up_to - sum(c.seq > self.signed_up_to for c in self.checkpoints)
        return True, (f"signatures: {_plural(len(self.checkpoints), 'checkpoint')}, all valid, by trusted key "
                      f"{keys}; the newest covers seq 1-{self.signed_up_to}"
                      + (f" ({_plural(newer, 'later event')} not yet signed)" if newer else ""))

    def _verdict(self) -> str:
        if not self.ok:
            return "FAILED: do not trust this ledger until the failures above are explained"
        if self.signed_up_to:
            return f"OK: events 1-{self.signed_up_to} are as the key's holder signed them"
        return "OK, but unsigned: the chain is consistent, which anyone with write access can make it"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verify_report(
    path: str | os.PathLike[str], trusted: Collection[str] = (), head: str | None = None,
    wait_s: float | None = None,
) -> LedgerReport:
    """Check the ledger file at `path` (read-only): chain, checkpoints against `trusted` keys, a kept head."""
    from ledgerlab.storage.ledger import read_only_connection

    with read_only_connection(path, wait_s=wait_s) as con:
        chain = verify_connection(con)
        last = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        head_seq, head_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)
        kept = _find_head(con, head) if head is not None else None
        checkpoints = verify_checkpoints(con, set(trusted))
        return LedgerReport(chain, head_seq, head_hash, checkpoints, kept, verify_derived(con))


def _find_head(con: duckdb.DuckDBPyConnection, head: str) -> HeadCheck:
    wanted = head.strip().lower()
    seq, following = con.execute(
        "SELECT e.seq, (SELECT count(*) FROM events WHERE seq > e.seq) FROM events e WHERE e.hash = ? "
        "ORDER BY e.seq LIMIT 1", [wanted]).fetchone() or (None, 0)
    return HeadCheck(wanted, seq, int(following))
