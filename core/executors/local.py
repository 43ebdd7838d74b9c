"""The local executor: up to N runs at once in threads (each domain run spawns its own child process)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import traceback

from ledgerlab.core.protocols import Domain, RunRequest, RunResult


class LocalExecutor:
    """Runs runs in a thread pool of `workers` slots on this machine."""

    name = "local"

    def __init__(self, domain: Domain, workers: int = 1) -> None:
        self.domain = domain
        self.slots = max(1, workers)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="ledgerlab-run")
        self._futures: dict[cf.Future[RunResult], str] = {}
        self._lock = threading.Lock()

    def threads_per_run(self) -> int:
        """CPU threads each concurrent run may use (the cores divided among the slots)."""
        return max(1, (os.cpu_count() or 1) // self.slots)

    def submit(self, domain_name: str, request: RunRequest) -> None:
        """Start `request` in the background."""
        future = self._pool.submit(_safe_run, self.domain, request)
        with self._lock:
            self._futures[future] = request.run_id

    def in_flight(self) -> int:
        with self._lock:
            return len(self._futures)

    def wait(self, timeout: float | None = None) -> list[tuple[str, RunResult]]:
        """Block until at least one run is done (or `timeout`); return the finished ones."""
        with self._lock:
            pending = list(self._futures)
        if not pending:
            return []
        done, _ = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        results = []
        with self._lock:
            for future in done:
                results.append((self._futures.pop(future), future.result()))
        return results

    def shutdown(self) -> None:
        """Stop accepting work; running domain runs are stopped by the domain's own cancel hook."""
        cancel = getattr(self.domain, "cancel_all", None)
        if callable(cancel):
            cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _safe_run(domain: Domain, request: RunRequest) -> RunResult:
    # A domain bug must become a crashed run, never an exception in the loop.
    try:
        return domain.run(request)
    except Exception as exc:  # noqa: BLE001 - any failure of plug-in code is a run outcome
        tail = "".join(traceback.format_exception(exc)[-5:])
        return RunResult(status="crashed", error=f"domain raised {type(exc).__name__}: {exc}", log_tail=tail)
