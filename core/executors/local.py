"""The local executor: up to N runs at once in threads (each domain run spawns its own child process).

Each of the N slots owns a share of the machine. Before a run starts, the executor fills the request's
resource fields that the caller left empty (`request.model_copy(update=...)`):

- `threads`: the usable cores divided among the slots, at least 1;
- `device`: when GPUs are visible, the slot's own GPU as `cuda:<id>`, where `<id>` is the GPU as
  CUDA_VISIBLE_DEVICES of this process names it (an index, or a UUID when the variable holds UUIDs). A domain
  that runs a child process sets the child's CUDA_VISIBLE_DEVICES to that id (`core.sandbox.scrubbed_env`
  does, from `device`), so the child sees exactly one GPU, as `cuda:0`. With more slots than GPUs, slots
  share GPUs round robin.

GPUs are detected from CUDA_VISIBLE_DEVICES when it is set, else from `nvidia-smi -L`; never by importing
torch.
A slot is taken when its run starts and given back when the run ends, whatever its outcome.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.executors.inflight import InFlight
from ledgerlab.core.outcomes import traceback_tail
from ledgerlab.core.protocols import Domain, RunRequest, RunResult

if TYPE_CHECKING:
    from ledgerlab.core.config import ExecutorConfig

# ------------------------------------------------------------------------------------------- resources


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def detect_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs runs may use, as CUDA_VISIBLE_DEVICES ids: from that variable when set, else nvidia-smi -L."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids: list[str] = []
        for part in (p.strip() for p in visible.split(",")):
            if not part or part.startswith("-"):  # CUDA ignores everything from the first invalid entry
                break
            ids.append(part)
        return ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return parse_nvidia_smi(out.stdout)


def parse_nvidia_smi(listing: str) -> list[str]:
    """GPU ids from `nvidia-smi -L`: the indices, or the MIG instances' UUIDs where GPUs are partitioned."""
    gpus, migs = [], []
    for line in listing.splitlines():
        gpu = re.match(r"\s*GPU (\d+):", line)
        if gpu:
            gpus.append(gpu.group(1))
            continue
        mig = re.search(r"\bMIG\b.*\(UUID: (MIG-[^)\s]+)\)", line)
        if mig:
            migs.append(mig.group(1))
    return migs or gpus


def threads_for(cores: int, slots: int) -> int:
    """CPU threads each of `slots` concurrent runs may use."""
    return max(1, cores // max(1, slots))


# ------------------------------------------------------------------------------------------- executor


class LocalExecutor:
    """Runs runs in a thread pool of `workers` slots on this machine."""

    name = "local"

    def __init__(self, domain: Domain, workers: int = 1, *, cores: int | None = None,
                 gpus: Sequence[str] | None = None) -> None:
        self.domain = domain
        self.slots = max(1, int(workers))
        self.cores = usable_cores() if cores is None else max(1, int(cores))
        self.gpus: tuple[str, ...] = tuple(detect_gpus() if gpus is None else gpus)
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(self.slots):
            self._free.put(slot)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="ledgerlab-run")
        self._runs: InFlight[cf.Future[RunResult]] = InFlight("local")

    # -- resources -------------------------------------------------------------------------------

    def threads_per_run(self) -> int:
        """CPU threads each concurrent run may use (the cores divided among the slots)."""
        return threads_for(self.cores, self.slots)

    def device_for(self, slot: int) -> str | None:
        """The GPU of `slot` (`cuda:<id>`), or None when there is no GPU."""
        return f"cuda:{self.gpus[slot % len(self.gpus)]}" if self.gpus else None

    def assign(self, request: RunRequest, slot: int) -> RunRequest:
        """`request` with the slot's resources filled in where the caller left them empty."""
        update: dict[str, object] = {}
        if request.threads is None:
            update["threads"] = self.threads_per_run()
        if request.device is None and self.gpus:
            update["device"] = self.device_for(slot)
        return request.model_copy(update=update) if update else request

    # -- the protocol ----------------------------------------------------------------------------

    def submit(self, domain_name: str, request: RunRequest) -> None:
        """Start `request` in the background (it waits for a free slot when all are busy)."""
        self._runs.add(request.run_id, lambda: self._pool.submit(self._run_in_slot, request))

    def in_flight(self) -> int:
        """Runs submitted whose results `wait` has not returned yet (running or waiting for a slot)."""
        return len(self._runs)

    def wait(self, timeout: float | None = None) -> list[tuple[str, RunResult]]:
        """Block until at least one run is done (or `timeout`); return every finished one, each exactly once.

        Returns [] on timeout or when nothing is in flight.
        """
        pending = self._runs.handles()
        if not pending:
            return []
        done, _ = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return [(run_id, _outcome(future)) for future in done if (run_id := self._runs.pop(future)) is not None]

    def shutdown(self, wait: bool = False) -> None:
        """Stop: runs not started are dropped, running ones are stopped by the domain's `cancel_all` hook."""
        self._runs.close()
        as_domain(self.domain).cancel_all()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- internals -------------------------------------------------------------------------------

    def _run_in_slot(self, request: RunRequest) -> RunResult:
        slot = self._free.get()  # never blocks long: the pool has as many threads as slots
        try:
            return safe_run(self.domain, self.assign(request, slot))
        finally:
            self._free.put(slot)


def from_config(config: ExecutorConfig, domain: Domain, domain_name: str, domain_options: dict[str, Any],
                **extra: Any) -> LocalExecutor:
    """The `local` entry of the `ledgerlab.executors` group: `config.workers` slots in this process."""
    return LocalExecutor(domain, config.workers, **extra)


def safe_run(domain: Domain, request: RunRequest) -> RunResult:
    """`domain.run(request)`; a domain bug becomes a crashed run, never an exception in the loop."""
    try:
        return domain.run(request)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of plug-in code is a run outcome
        return RunResult(status="crashed", error=f"domain raised {type(exc).__name__}: {exc}",
                         log_tail=traceback_tail(exc))


def _outcome(future: cf.Future[RunResult]) -> RunResult:
    if future.cancelled():
        return RunResult(status="crashed", error="cancelled: the executor stopped before the run started")
    exc = future.exception()
    if exc is not None:
        return RunResult(status="crashed", error=f"the executor failed: {type(exc).__name__}: {exc}",
                         log_tail=traceback_tail(exc))
    return future.result()
