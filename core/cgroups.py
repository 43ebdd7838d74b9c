"""A control group per sandboxed run: one memory and process-count limit for all its processes, and its peak.

    group = RunGroup.create("r-1a2b", memory_mb=8192, pids=512)   # None where cgroups cannot be used
    ... the run's first program writes its pid to each of group.join_paths() (core/launcher.py) ...
    group.peak_memory_mb(); group.kill(); group.remove()

cgroup v2 (the unified hierarchy) and v1 (separate memory and pids hierarchies) are both supported; creating
groups needs write access to the hierarchy, which in practice means root (CI, containers) or a delegated
subtree. Where neither works the sandbox falls back to rlimits and polling (core/sandbox.py says which).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "ledgerlab"


@dataclass(frozen=True)
class RunGroup:
    """The cgroup directories of one run (one for v2; memory and pids for v1)."""

    memory_dir: Path
    pids_dir: Path
    version: int

    @classmethod
    def create(cls, name: str, memory_mb: int | None, pids: int | None, root: Path | None = None) -> RunGroup | None:
        """A new group with these limits, or None when this process cannot create one."""
        root = ROOT if root is None else root
        try:
            if (root / "cgroup.controllers").exists():
                return _create_v2(root, name, memory_mb, pids)
            if (root / "memory" / "cgroup.procs").exists() and (root / "pids" / "cgroup.procs").exists():
                return _create_v1(root, name, memory_mb, pids)
        except OSError:
            return None
        return None

    def join_paths(self) -> tuple[str, ...]:
        """The `cgroup.procs` files a new process writes its pid to (core/launcher.py) to enter the group."""
        files = {str(self.memory_dir / "cgroup.procs"), str(self.pids_dir / "cgroup.procs")}
        return tuple(sorted(files))

    def pids_in(self) -> list[int]:
        """Processes in the group now."""
        try:
            text = (self.pids_dir / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def peak_memory_mb(self) -> float | None:
        """The group's peak memory use (all its processes and their tmpfs pages), MiB."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.memory_dir / name).read_text().split()[0]) / 2**20
        except (OSError, ValueError, IndexError):
            return None

    def hit_memory_limit(self) -> bool:
        """True when the kernel killed a process of the group for memory (the run ran out of memory)."""
        try:
            if self.version == 2:
                events = dict(line.split() for line in (self.memory_dir / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            control = (self.memory_dir / "memory.oom_control").read_text().split()
            if "oom_kill" in control:
                return int(control[control.index("oom_kill") + 1]) > 0
            # Kernels before 4.13 do not count kills: any time the limit was hit counts.
            return int((self.memory_dir / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError, IndexError):
            return False

    def kill(self, wait_s: float = 10.0) -> None:
        """SIGKILL every process of the group until none is left (new ones may fork while we kill)."""
        deadline = time.monotonic() + wait_s
        while pids := self.pids_in():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)  # a killed process leaves the group once it has exited

    def remove(self) -> None:
        """Delete the group's directories (they must be empty of processes)."""
        for path in {self.memory_dir, self.pids_dir}:
            try:
                path.rmdir()
            except OSError:
                pass


def _create_v2(root: Path, name: str, memory_mb: int | None, pids: int | None) -> RunGroup:
    parent = root / PARENT
    _enable(root, ("memory", "pids"))
    parent.mkdir(exist_ok=True)
    _enable(parent, ("memory", "pids"))
    group = parent / name
    group.mkdir()
    if memory_mb is not None:
        (group / "memory.max").write_text(str(int(memory_mb) * 2**20))
        _write_if_exists(group / "memory.swap.max", "0")
    if pids is not None:
        (group / "pids.max").write_text(str(int(pids)))
    return RunGroup(memory_dir=group, pids_dir=group, version=2)


def _create_v1(root: Path, name: str, memory_mb: int | None, pids: int | None) -> RunGroup:
    memory, pid_dir = root / "memory" / PARENT / name, root / "pids" / PARENT / name
    memory.mkdir(parents=True)
    try:
        pid_dir.mkdir(parents=True)
    except OSError:
        memory.rmdir()
        raise
    if memory_mb is not None:
        limit = str(int(memory_mb) * 2**20)
        (memory / "memory.limit_in_bytes").write_text(limit)
        _write_if_exists(memory / "memory.memsw.limit_in_bytes", limit)  # no escape into swap
    if pids is not None:
        (pid_dir / "pids.max").write_text(str(int(pids)))
    return RunGroup(memory_dir=memory, pids_dir=pid_dir, version=1)


def _enable(group: Path, controllers: tuple[str, ...]) -> None:
    enabled = set((group / "cgroup.subtree_control").read_text().split())
    missing = [c for c in controllers if c not in enabled]
    if missing:
        (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))


def _write_if_exists(path: Path, value: str) -> None:
    if path.exists():
        try:
            path.write_text(value)
        except OSError:
            pass  # e.g. swap accounting off: the memory limit alone still holds
