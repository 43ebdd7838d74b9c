"""The project folder: `ledgerlab.toml`, and `.ledgerlab/` with the ledger, run logs and working copies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "ledgerlab.toml"
STATE_DIR = ".ledgerlab"
LEDGER_NAME = "ledger.duckdb"


@dataclass(frozen=True)
class Project:
    """Paths of one project folder."""

    root: Path

    @classmethod
    def at(cls, directory: str | os.PathLike[str] | None = None) -> Project:
        """The project at `directory`, else $LEDGERLAB_DIR, else the current directory."""
        chosen = directory or os.environ.get("LEDGERLAB_DIR") or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / LEDGER_NAME

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"
