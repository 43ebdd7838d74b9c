"""What the runs in flight are doing, for the console of `ledgerlab run`: display only, never a measurement.

A run's log (`<runs>/<run id>.log`) is written by the run itself, inside its sandbox; a harness may print
progress lines there (ml_training: `step N | tokens N | loss X | P% of budget`). This module reads the
latest such line of each run in flight and shows it: on a terminal as one live line under the log of
events (step, tokens, loss, ETA), elsewhere (a log file, CI) as a heartbeat line after HEARTBEAT_S seconds
without output. The run wrote those numbers, so they are parsed as numbers, never echoed, and nothing but
this display reads them (the metric comes from the domain's evaluator).

    progress = RunProgress(console, runs_dir)
    progress.start()                                  # a thread polls the logs
    progress.started("r7", "r7 candidate 1a2b3c4d")   # on RunStarted
    progress.ended("r7")                              # on RunFinished / RunFailed
    progress.printed()                                # any other line reached the console
    progress.close()
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_S = 30.0  # off a terminal: a line per run in flight after this long without output
POLL_S = 1.0  # how often the logs are read
TAIL_BYTES = 16_384  # of a log, only its end is read: a run may print a lot
PROGRESS = re.compile(r"^step (\d+) \| tokens (\d+) \| loss (\S+) \| +(\d+)% of budget$")


@dataclass(frozen=True)
class Progress:
    """A run's own account of how far it is (numbers only)."""

    step: int
    tokens: int
    loss: float
    fraction: float


def parse_progress(text: str) -> Progress | None:
    """The last progress line in `text`, or None."""
    for line in reversed(text.splitlines()):
        found = PROGRESS.match(line.strip())
        if found:
            step, tokens, loss, percent = found.groups()
            try:
                value = float(loss)
            except ValueError:
                value = float("nan")
            return Progress(int(step), int(tokens), value, min(int(percent), 100) / 100)
    return None


def read_end(path: Path, size: int = TAIL_BYTES) -> str:
    """The last `size` bytes of a file as text ("" when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@dataclass
class _Flight:
    """A run in flight: where its log is, and the first and latest progress seen (with when)."""

    label: str
    log: Path | None
    started: float
    first: tuple[float, float] | None = None  # (time, fraction) of the first progress line seen
    latest: Progress | None = None


def describe(run: _Flight, now: float) -> str:
    """One line for a run in flight: its progress, elapsed time and ETA as far as they are known."""
    parts = [f"run {run.label}"]
    p = run.latest
    if p is not None:
        loss = f"{p.loss:.3f}" if p.loss == p.loss else "nan"
        parts.append(f"step {p.step} · {p.tokens:,} tokens · loss {loss} · {p.fraction:.0%}")
    parts.append(f"{now - run.started:.0f} s")
    eta = _eta(run, now)
    if p is not None and p.fraction >= 1:
        parts.append("training done, being evaluated")
    elif eta is not None:
        parts.append(f"ETA {eta:.0f} s")
    return " · ".join(parts)


def _eta(run: _Flight, now: float) -> float | None:
    """Seconds of training left, from the rate since the first progress line (None before a rate exists)."""
    if run.first is None or run.latest is None:
        return None
    t0, f0 = run.first
    done = run.latest.fraction - f0
    if done <= 0 or now <= t0:
        return 0.0 if run.latest.fraction >= 1 else None
    return max(0.0, (1 - run.latest.fraction) * (now - t0) / done)


class RunProgress:
    """Polls the logs of the runs in flight and shows their progress on `console` (rich)."""

    def __init__(self, console: Any, runs_dir: Path | None, *, heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic, live: bool | None = None) -> None:
        self.console, self.runs_dir, self.heartbeat_s, self.clock = console, runs_dir, heartbeat_s, clock
        self.live_mode = bool(console.is_terminal) if live is None else live
        self._runs: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._last_output = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None

    # -- events ------------------------------------------------------------------------------------

    def started(self, run_id: str, label: str) -> None:
        log = self.runs_dir / f"{run_id}.log" if self.runs_dir is not None else None
        with self._lock:
            self._runs[run_id] = _Flight(label=label, log=log, started=self.clock())

    def ended(self, run_id: str) -> None:
        now = self.clock()
        with self._lock:
            self._runs.pop(run_id, None)
            left = list(self._runs.values())
        if self.live_mode:  # the finished run's line goes at once, not at the next poll
            self._show_live([describe(run, now) for run in left])

    def printed(self) -> None:
        """A line reached the console: the heartbeat's silence starts again."""
        with self._lock:
            self._last_output = self.clock()

    # -- polling -----------------------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Read the logs once; returns the lines shown (the live line, or the heartbeat lines printed)."""
        now = self.clock()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            latest = parse_progress(read_end(run.log)) if run.log is not None else None
            if latest is not None:
                if run.first is None:
                    run.first = (now, latest.fraction)
                run.latest = latest
        lines = [describe(run, now) for run in runs]
        if self.live_mode:
            self._show_live(lines)
            return lines
        with self._lock:
            due = bool(lines) and now - self._last_output >= self.heartbeat_s
            if due:
                self._last_output = now
        if not due:
            return []
        for line in lines:
            self._print(f"   {line}")
        return lines

    def _show_live(self, lines: list[str]) -> None:
        if self._live is None:
            return
        from rich.text import Text

        self._live.update(Text("\n".join(f"   {line}" for line in lines), style="dim"))

    def _print(self, line: str) -> None:
        from rich.text import Text

        try:
            self.console.print(Text(time.strftime("%H:%M:%S ") + line, style="dim"))
        except Exception:  # noqa: BLE001 - progress output must never stop a campaign
            print(line, flush=True)

    # -- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(console=self.console, transient=True, refresh_per_second=4,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="ledgerlab-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a display problem must never stop a campaign
                pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._live is not None:
            self._live.stop()
            self._live = None
