"""The append-only event ledger and the SQL views users query."""
