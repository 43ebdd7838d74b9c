"""The `ledgerlab` command line (typer); heavy modules are imported lazily."""
