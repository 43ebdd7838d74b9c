"""The first program of every sandboxed run: enter the run's cgroups, set its rlimits, then exec the command.

    python -I -S launcher.py [--cgroup PROCS_FILE]... [--rlimit NAME=VALUE]... -- COMMAND [ARG]...

core/sandbox.py starts this instead of doing the same in a `preexec_fn`. A preexec_fn is Python code in the
child of a fork() of the campaign's process, which has threads (the executor's, the ledger's query server,
the progress display). CPython prepares such a child by clearing the other threads' states, and that runs
destructors of what only those threads held: a DuckDB connection in another thread's `threading.local` (the
query parser of storage/query.py) joined its worker threads, which do not exist in the child, and the child
died of SIGSEGV before the run started ("exit code -11", an empty log). Without a preexec_fn, subprocess runs
no Python between fork and exec; the setup happens here, in a fresh single-threaded interpreter.

It imports os, sys and resource only (it runs with -I -S: no site, no user paths, no PYTHON* variables).
It never runs the command outside its limits: a cgroup it cannot enter or a limit it cannot set ends it with
EXIT_SETUP and one line on stderr (the run's log). COMMAND must be a path (the sandbox resolves it).
"""

from __future__ import annotations

import os
import sys

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource = None  # type: ignore[assignment]

EXIT_SETUP = 125  # the run's limits could not be applied: the command never ran
EXIT_EXEC = 127  # the command could not be executed
PREFIX = "sandbox launcher"


def parse(argv: list[str]) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """(cgroup.procs files, (rlimit name, value) pairs, command) from the launcher's arguments."""
    joins: list[str] = []
    limits: list[tuple[str, int]] = []
    args = list(argv)
    while args and args[0] != "--":
        flag = args.pop(0)
        if not args:
            raise ValueError(f"{flag} needs a value")
        value = args.pop(0)
        if flag == "--cgroup":
            joins.append(value)
        elif flag == "--rlimit":
            name, _, number = value.partition("=")
            limits.append((name, int(number)))
        else:
            raise ValueError(f"unknown option {flag}")
    if not args or len(args) < 2:
        raise ValueError("no command after --")
    return joins, limits, args[1:]


def apply(joins: list[str], limits: list[tuple[str, int]]) -> None:
    """Move this process into the groups, then set each limit (soft and hard)."""
    pid = str(os.getpid()).encode()
    for path in joins:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    for name, value in limits:
        if resource is None:
            raise OSError(f"no rlimits on this system, cannot set {name}")
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))


def main(argv: list[str]) -> None:
    try:
        joins, limits, command = parse(argv)
        apply(joins, limits)
    except (OSError, ValueError, AttributeError) as exc:
        sys.stderr.write(f"{PREFIX}: the run's limits could not be applied, not running it: {exc}\n")
        sys.stderr.flush()
        os._exit(EXIT_SETUP)
    try:
        os.execv(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"{PREFIX}: cannot execute {command[0]}: {exc}\n")
        sys.stderr.flush()
        os._exit(EXIT_EXEC)


if __name__ == "__main__":
    main(sys.argv[1:])
