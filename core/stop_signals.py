"""Ctrl-C and SIGTERM as a request to stop a loop at its next step, not an exception in the middle of one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call `stop("interrupted (SIGINT)")` etc.; the old handlers come back after.

    Only the main thread may set handlers: elsewhere (a loop run in a worker thread by tests or an embedding
    program) this does nothing, and stopping is the caller's business.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        stop(f"interrupted ({signal.Signals(signum).name})")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
