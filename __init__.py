"""ledgerlab: research campaigns judged by statistics, recorded in an append-only DuckDB ledger.

    import ledgerlab
    lab = ledgerlab.open("myrun")    # a read-only, typed handle on a project's ledger (ledgerlab/api.py)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "open"]


def __getattr__(name: str) -> Any:
    """`ledgerlab.open`, imported on first use: the CLI's start-up never pays for sqlmodel."""
    if name == "open":
        from ledgerlab.api import open

        return open
    raise AttributeError(f"module 'ledgerlab' has no attribute {name!r}")
