"""Shared pytest fixtures: a ledger path in a fresh folder, and a store of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """Where a project's ledger lives (`Project.at(tmp_path).ledger_path`); the folder does not exist yet."""
    return tmp_path / ".ledgerlab" / "ledger.duckdb"


@pytest.fixture(params=["memory", "duckdb"])
def store(request: pytest.FixtureRequest, ledger_path: Path) -> Iterator[object]:
    """An empty EventStore of each implementation."""
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.memory import InMemoryLedger

    made = InMemoryLedger() if request.param == "memory" else DuckDBLedger(ledger_path)
    yield made
    made.close()
