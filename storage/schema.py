"""The ledger's own tables: `events` (the append-only log) and `ledger_meta` (which views a file has).

One module that storage/ledger.py (which appends) and storage/views.py (which installs the tables and the
views over them) both import, so neither imports the other's internals.
"""

from __future__ import annotations

COLUMNS = (
    "seq", "event_id", "campaign_id", "version", "type", "schema_version", "payload", "recorded_at",
    "prev_hash", "hash",
)
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq            BIGINT    PRIMARY KEY,  -- global, gapless, assigned at append
    event_id       VARCHAR   NOT NULL,     -- UUID
    campaign_id    VARCHAR   NOT NULL,
    version        BIGINT    NOT NULL,     -- position in the campaign stream, from 1
    type           VARCHAR   NOT NULL,
    schema_version INTEGER   NOT NULL,
    payload        JSON      NOT NULL,
    recorded_at    TIMESTAMP NOT NULL,     -- UTC
    prev_hash      VARCHAR   NOT NULL,
    hash           VARCHAR   NOT NULL,     -- sha256(canonical row), see storage/events.py
    UNIQUE (campaign_id, version)
)
"""
META_DDL = """
CREATE TABLE IF NOT EXISTS ledger_meta (
    key    VARCHAR   NOT NULL,
    value  VARCHAR   NOT NULL,
    set_at TIMESTAMP NOT NULL DEFAULT (now()::TIMESTAMP)
)
"""  # append-only like `events`: the largest views_version row wins
