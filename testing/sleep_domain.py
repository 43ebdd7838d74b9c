"""A domain whose runs sleep, for executor tests and bench/parallel.py (not an entry point).

Each run records when it started and ended, its process, and the threads/device the executor gave it, in the
result's metrics. Options:
- `seconds`: how long a run sleeps;
- `fail_ids`: run ids whose run raises (the executor must turn that into a crashed result);
- `die_once_ids` + `marker_dir`: run ids whose process dies (os._exit) on the first attempt; a marker file
  remembers the attempt, and `<marker_dir>/<run_id>.attempts` counts every attempt;
- `meet` (with `marker_dir`): a run starts its sleep only once `meet` runs have started (their `.attempts`
  files), waiting up to MEET_WAIT_S: runs that overlap by construction, so "two ran at once" needs no race
  between a run's start and the other's end, however loaded the machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from ledgerlab.core.domain_base import DomainBase
from ledgerlab.core.protocols import Knob, MetricSpec, RunRequest, RunResult

MEET_WAIT_S = 180.0
REF = f"{__file__}:SleepDomain"  # the factory a Ray worker loads, by file (as a plug-in outside a package would)


class SleepDomain(DomainBase):
    name = "sleep"
    design: Literal["independent", "concurrent"] = "independent"
    description = "Runs sleep for a fixed time; the value is the seed."
    metric = MetricSpec(name="value", direction="minimize")

    def __init__(self, seconds: float = 0.5, fail_ids: list[str] | tuple[str, ...] = (),
                 die_once_ids: list[str] | tuple[str, ...] = (), marker_dir: str | None = None,
                 meet: int = 0) -> None:
        self.seconds = float(seconds)
        self.meet = int(meet)
        self.fail_ids = set(fail_ids)
        self.die_once_ids = set(die_once_ids)
        self.marker_dir = Path(marker_dir) if marker_dir else None
        self.cancelled = False

    def baseline(self) -> dict[str, str]:
        return {"x.txt": "0"}

    def knobs(self) -> tuple[Knob, ...]:
        return ()

    def validate(self, files: Any) -> None:
        return None

    def run(self, request: RunRequest) -> RunResult:
        start = time.time()
        if self.marker_dir is not None:
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            with open(self.marker_dir / f"{request.run_id}.attempts", "a") as f:
                f.write(f"{os.getpid()}\n")
            marker = self.marker_dir / f"{request.run_id}.died"
            if request.run_id in self.die_once_ids and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the whole worker process dies mid-run
        if request.run_id in self.fail_ids:
            raise RuntimeError(f"boom in {request.run_id}")
        if self.meet and self.marker_dir is not None:
            deadline = time.monotonic() + MEET_WAIT_S
            while len(list(self.marker_dir.glob("*.attempts"))) < self.meet and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(self.seconds)
        end = time.time()
        return RunResult(status="finished", value=float(request.seed), duration_s=end - start,
                         metrics={"start": start, "end": end, "pid": os.getpid(), "threads": request.threads,
                                  "device": request.device, "run_id": request.run_id})

    def cancel_all(self) -> None:
        self.cancelled = True


def request(run_id: str, tmp_path: Path, seed: int = 0, **kw: Any) -> RunRequest:
    """A run request for the sleep domain, working in `tmp_path/run_id`."""
    return RunRequest(run_id=run_id, candidate_id="c0", files={"x.txt": "0"}, seed=seed,
                      workdir=tmp_path / run_id, **kw)


def collect(executor: Any, n: int, timeout: float = 180.0) -> dict[str, RunResult]:
    """Results of `n` runs from `executor.wait`, failing on a duplicate result for any run id.

    The timeout is generous (a loaded machine starts Ray workers slowly); it returns as soon as all `n` are in.
    """
    results: dict[str, RunResult] = {}
    deadline = time.monotonic() + timeout
    while len(results) < n and time.monotonic() < deadline:
        for run_id, result in executor.wait(timeout=1.0):
            assert run_id not in results, f"duplicate result for {run_id}"
            results[run_id] = result
    return results
