"""Run an untrusted command safely: a child process in its own session, a scrubbed environment, limits, a log.

Domain-neutral: any domain whose runs execute generated code uses it.

    result = run_sandboxed([sys.executable, "train.py"], cwd=workdir, log_path=workdir / "run.log",
                           timeout_s=60, extra_env={"LEDGERLAB_SEED": "0"}, threads=2, memory_limit_mb=8192)

What the child gets and does not get:
- the environment is rebuilt from an allowlist (PATH, LANG, LC_ALL, TZ, LD_LIBRARY_PATH), HOME and TMPDIR
  point into the working copy, thread variables come from `threads`, CUDA_VISIBLE_DEVICES from `device`;
  everything else (API keys, tokens, cloud credentials) is dropped. `extra_env` adds the caller's own values.
- it starts a new session (its own process group): at the timeout, on cancel, and after it exits, the whole
  group is killed with SIGKILL, grandchildren included (a process that calls setsid() itself escapes this;
  containers or cgroups are the stronger boundary).
- RLIMIT_AS caps its address space (a huge allocation fails with MemoryError / "can't allocate memory");
  CUDA maps huge virtual ranges, so callers leave the limit off (None) for GPU runs. No core dumps.
- stdout and stderr go to one log file; the result carries its tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no rlimits, no process groups by signal
    resource = None  # type: ignore[assignment]

ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")
POLL_S = 0.1


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed command ended."""

    exit_code: int | None  # None when it was killed by us; negative: killed by that signal
    timed_out: bool
    cancelled: bool
    duration_s: float
    log_path: Path
    log_tail: str


# ------------------------------------------------------------------------------------------- environment


def scrubbed_env(workdir: Path, extra_env: Mapping[str, str] | None = None, threads: int | None = None,
                 device: str | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the allowlist from `base` (default os.environ) plus what the run needs."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in ENV_ALLOWLIST if k in base}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(workdir), TMPDIR=str(tmp), PYTHONUNBUFFERED="1", PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1")
    if threads:
        env.update({var: str(threads) for var in THREAD_VARS})
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(device)
    elif "CUDA_VISIBLE_DEVICES" in base:
        env["CUDA_VISIBLE_DEVICES"] = base["CUDA_VISIBLE_DEVICES"]
    env.update(extra_env or {})
    return env


def cuda_visible_devices(device: str) -> str:
    """'cuda:1' -> '1', 'cuda' -> '0', anything else (cpu, mps) -> '' (no GPU visible)."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return index or "0"
    return ""


# ------------------------------------------------------------------------------------------- limits


def _limiter(memory_limit_mb: int | None):
    """A preexec_fn that sets the rlimits in the child; only async-signal-safe-ish calls, no imports."""
    if resource is None:
        return None
    limit = None if memory_limit_mb is None else int(memory_limit_mb) * 2**20
    setrlimit, rlimit_as, rlimit_core = resource.setrlimit, resource.RLIMIT_AS, resource.RLIMIT_CORE

    def apply() -> None:
        setrlimit(rlimit_core, (0, 0))
        if limit is not None:
            setrlimit(rlimit_as, (limit, limit))

    return apply


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------------- running


def run_sandboxed(command: Sequence[str], cwd: Path, log_path: Path, timeout_s: float | None = None,
                  extra_env: Mapping[str, str] | None = None, threads: int | None = None,
                  device: str | None = None, memory_limit_mb: int | None = None,
                  cancel: threading.Event | None = None, tail_chars: int = 4000) -> SandboxResult:
    """Run `command` in `cwd` under the sandbox; never raises for the command's own failures."""
    cwd, log_path = Path(cwd), Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = scrubbed_env(cwd, extra_env, threads, device)
    start = time.monotonic()
    timed_out = cancelled = False
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_limiter(memory_limit_mb))
        try:
            while proc.poll() is None:
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    timed_out = True
                    break
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                time.sleep(POLL_S)
        finally:
            # Always: a finished parent may have left grandchildren running in its group.
            kill_group(proc.pid)
            proc.wait()
    code = None if (timed_out or cancelled) else proc.returncode
    return SandboxResult(exit_code=code, timed_out=timed_out, cancelled=cancelled,
                         duration_s=time.monotonic() - start, log_path=log_path,
                         log_tail=read_tail(log_path, tail_chars))


def read_tail(path: Path, chars: int = 4000) -> str:
    """The last `chars` characters of a (possibly large, possibly binary-garbled) log file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""
