"""One runner per project folder, enforced by the operating system: an flock on the `.ledgerlab` directory.

    with hold(project) as lock:                     # RunnerLocked (with the holder's pid) if a runner has it
        store = DuckDBLedger(project.ledger_path, guard=lock.check)
    runner_alive(project)                           # True while some runner holds it (what `status` asks)

What is locked. The lock is an flock on a descriptor of the `.ledgerlab` directory itself, held open for the
life of the runner; the kernel drops it when the process ends, however it ends (an exception, kill -9, a
reboot), so a held lock means a live runner. A lock on a file inside the folder could be bypassed: delete or
replace the file, and the next runner locks the new inode. Nothing done to the files in the folder touches the
directory's lock. What remains is swapping the directory itself (`mv .ledgerlab old; mkdir .ledgerlab`, or
`rm -rf .ledgerlab`): the next runner then locks the new directory, so the holder checks (`check`, called by
the ledger before every lease it opens) that the path still names the directory it locked, and stops
instead of writing into a ledger another runner owns.

The pid. flock records no owner a program can ask for, so the holder's pid is read from /proc/locks (Linux;
it cannot be forged from the folder) and else from `run.lock`, which the runner writes for people and for
systems without /proc. `run.lock` is replaced atomically, so a chmod or a stale copy of it never stops a run.

`status` probes with a shared, non-blocking flock that it drops at once; a runner starting at that instant
retries for START_WAIT_S before it reports the folder busy. The lock's descriptor is closed in forked
children (os.register_at_fork), so a worker that outlives a killed runner does not keep the lock alive.

Windows has no flock: `hold` locks nothing there (one runner per folder is the user's job, as before this
module existed) and `runner_alive` answers None, so `status` trusts the ledger alone.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledgerlab.core.project import Project
from ledgerlab.errors import CampaignError, LedgerError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

PID_FILE = "run.lock"
START_WAIT_S = 2.0  # how long a starting runner retries while the lock is taken (a `status` probe holds it µs)
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
_held: set[int] = set()  # descriptors this process holds locks with


def _close_in_child() -> None:
    # The child's copy of the descriptor refers to the same lock; closing the copy (never LOCK_UN, which would
    # release the parent's lock) leaves the lock to the parent alone.
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunnerLocked(CampaignError):
    """Another runner holds the project folder."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


@dataclass
class RunnerLock:
    """The held lock: the directory's descriptor and its identity when locked."""

    project: Project
    fd: int | None
    identity: tuple[int, int] | None

    def check(self) -> None:
        """Raise LedgerError if `.ledgerlab` is no longer the directory this runner locked (moved, deleted)."""
        if self.identity is None:
            return
        try:
            st = os.stat(self.project.state_dir)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now != self.identity:
            raise LedgerError(
                f"{self.project.state_dir} was moved, deleted or replaced while this runner held it; stopping "
                "without writing to a ledger another runner may own (the events written so far are in the folder "
                "that was moved, if it still exists)"
            )


def _open_dir(project: Project) -> int:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    return os.open(project.state_dir, flags)


@contextmanager
def hold(project: Project) -> Iterator[RunnerLock]:
    """Hold the folder's runner lock for the block; RunnerLocked (naming the holder's pid) if another has it."""
    project.state_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # Windows: no lock (see the module docstring)
        yield RunnerLock(project, None, None)
        return
    fd = _open_dir(project)
    try:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in _BUSY:
                    raise LedgerError(f"cannot lock {project.state_dir}: {exc.strerror}") from None
                writer = _holder_from_proc(fd)
                if writer is not None or time.monotonic() >= deadline:
                    pid = writer or _pid_from_file(project)
                    raise RunnerLocked(
                        f"another `ledgerlab run` (pid {pid or '?'}) is working in {project.root}; wait for it, "
                        "or stop it with Ctrl-C and `ledgerlab resume`", pid) from None
                time.sleep(0.02)
        st = os.fstat(fd)
        _held.add(fd)
        _write_pid(project)
        yield RunnerLock(project, fd, (st.st_dev, st.st_ino))
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock


def runner_alive(project: Project) -> bool | None:
    """Whether a runner holds the folder's lock now (None where this system cannot tell: Windows)."""
    if fcntl is None:
        return None
    try:
        fd = _open_dir(project)
    except OSError:
        return False  # no `.ledgerlab`: nobody runs here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return True
        return None
    finally:
        os.close(fd)  # also drops the shared lock, if taken
    return False


def holder_pid(project: Project) -> int | None:
    """The pid of the runner holding the folder, if one does and it can be found."""
    try:
        fd = _open_dir(project)
    except OSError:
        return None
    try:
        return _holder_from_proc(fd) or _pid_from_file(project)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- the pid


def _holder_from_proc(fd: int) -> int | None:
    """The pid of an exclusive flock on the directory `fd` names, from /proc/locks (Linux), else None."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"; a blocked waiter's line has "->" after the number.
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        if parts[5] == where and parts[4].isdigit() and int(parts[4]) > 0:
            return int(parts[4])
    return None


def _pid_from_file(project: Project) -> int | None:
    try:
        text = (project.state_dir / PID_FILE).read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


def _write_pid(project: Project) -> None:
    """`run.lock` := this pid, replaced atomically; only information, so a failure to write it is ignored."""
    path = project.state_dir / PID_FILE
    tmp: Path | None = None
    try:  # a new file of an unpredictable name (O_EXCL): never through a link planted at a guessable one
        fd, name = tempfile.mkstemp(prefix=f"{PID_FILE}.", suffix=".tmp", dir=project.state_dir)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
