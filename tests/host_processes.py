"""What runs on the host, for tests that check nothing of a run outlived it, and waiting on a runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE_S = 180.0  # generous: a loaded 2-core machine; a test waits on a condition, never on a clock


def processes_with(marker: str) -> list[int]:
    """Host pids, not zombies, whose command line holds `marker` (a zombie's command line is empty)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def until(what: str, check: Callable[[], Any], proc: subprocess.Popen[Any] | None = None,
          interval_s: float = 0.05) -> Any:
    """`check()`'s first truthy value, polled until DEADLINE_S; fails early if the runner `proc` exits."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the runner exited ({proc.returncode}) before {what}")
        got = check()
        if got:
            return got
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


class Runner:
    """A `ledgerlab ... --dir FOLDER` subprocess in its own session, its output read as it comes."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ledgerlab", *args, "--dir", str(folder)],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self) -> int:
        code = self.proc.wait(timeout=DEADLINE_S)
        self._reader.join(timeout=DEADLINE_S)
        return code

    def stop(self) -> None:
        """Kill the runner's whole session (it and its runs), then wait for it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()
