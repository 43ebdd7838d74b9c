"""Proposers: turn the incumbent and the ledger history into hypotheses with patches."""
