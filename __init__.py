"""ledgerlab: research campaigns judged by statistics, recorded in an append-only DuckDB ledger."""

__version__ = "0.1.0"
__all__ = ["__version__"]
