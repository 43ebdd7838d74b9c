"""Executors: run runs (locally in a process pool, or on Ray)."""
