"""Built-in domains; each registers through the `ledgerlab.domains` entry-point group."""
