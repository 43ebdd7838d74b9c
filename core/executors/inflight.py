"""The runs an executor has submitted and `wait` has not returned yet, shared by every executor."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ledgerlab.errors import ExecutorError

H = TypeVar("H", bound=Hashable)  # what the backend hands back for a started run (a Future, an ObjectRef)


class InFlight(Generic[H]):
    """Thread-safe map of started runs (backend handle -> run id) that refuses duplicates and a closed executor."""

    def __init__(self, executor: str) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self._runs: dict[H, str] = {}
        self._closed = False

    def add(self, run_id: str, start: Callable[[], H]) -> None:
        """Start a run with `start()` and track its handle; ExecutorError when closed or already in flight."""
        with self._lock:
            if self._closed:
                raise ExecutorError(f"the {self._executor} executor was shut down; it takes no more runs")
            if run_id in self._runs.values():
                raise ExecutorError(f"run {run_id} is already in flight; wait for its result first")
            self._runs[start()] = run_id

    def handles(self) -> list[H]:
        """The handles of the runs in flight, at this moment."""
        with self._lock:
            return list(self._runs)

    def pop(self, handle: H) -> str | None:
        """The run id of `handle`, no longer tracked (None when it was not, or already returned)."""
        with self._lock:
            return self._runs.pop(handle, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def close(self) -> list[H]:
        """Refuse new runs from now on; forget the ones in flight and return their handles."""
        with self._lock:
            self._closed = True
            handles, self._runs = list(self._runs), {}
        return handles
