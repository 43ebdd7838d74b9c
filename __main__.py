"""`python -m ledgerlab`: the same as the `ledgerlab` command."""

from ledgerlab.cli.main import main

main()
