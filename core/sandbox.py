"""Run untrusted code under the operating system's guard: a bubblewrap sandbox, whole-run limits, a log.

Domain-neutral: any domain whose runs execute generated code uses it.

    isolation = resolve_isolation("auto")            # "bwrap" where it works, else "process" (see below)
    box = Sandbox(workdir, isolation=isolation, inputs={"train.py": source}, data={"train.bin": path},
                  outputs=("model.pt2",), limits=Limits(memory_mb=8192))
    result = box.run([sys.executable, "train.py"], log_path=log, timeout_s=90, env={"SEED": "0"})
    box.output_path("model.pt2")                     # the host file the run wrote
    box.remove()                                     # the working copy is gone unless you keep it

With isolation "bwrap" (Linux with bubblewrap and user namespaces, or root) the run sees:
- its own PID namespace: it cannot see or signal anything outside; when the run ends (exit, timeout,
  cancel) bwrap's init dies and the kernel kills every process left in the namespace, escapees included;
- its own mount namespace: a read-only view of the system's /usr, the interpreter and its libraries;
  a working folder /sandbox and a /tmp that are size-capped tmpfs (freed with the sandbox); the inputs
  read-only inside /sandbox; the outputs as single writable files; data read-only under /data. The campaign
  folder, the ledger, $HOME, /etc and the ledgerlab package tree are not in its view at all;
- no network (its own empty network namespace) unless `network=True`;
- an unprivileged uid (65534: as root, bwrap runs privileged and setpriv drops to nobody with no
  capabilities and no_new_privs; otherwise a user namespace maps the caller to 65534), no capabilities;
- the scrubbed environment (bwrap itself is started with it: its pid 1 inside would show its own
  environment at /proc/1/environ otherwise).

Limits hold for the whole run, not per process: memory and process count through a cgroup where this
process can create one (root, or a delegated v2 subtree), else RLIMIT_AS per process plus a poller that
sums the run's resident memory and kills at the cap; bytes written by the size of the tmpfs and
RLIMIT_FSIZE on every file (the log and the outputs included); wall time by the caller's timeout. Peak memory
is measured here (cgroup peak, or the poller's maximum), never taken from the run's own report. The run's first
program is core/launcher.py, which enters the cgroup and sets the rlimits, then execs the command: no
preexec_fn, because Python code in a forked child of this multi-threaded process can crash (see there).

With isolation "process" (no bubblewrap, macOS, no user namespaces) the run is a child process in its own
session with the scrubbed environment, in `workdir`, under the same limits as far as rlimits and polling
reach: it can read what the user can read and write where the user can write. Callers warn about it.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ledgerlab.core import cgroups, launcher
from ledgerlab.errors import IsolationUnavailable

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource = None  # type: ignore[assignment]

IsolationPolicy = Literal["auto", "strict", "process"]
Isolation = Literal["bwrap", "process"]
ISOLATION_POLICIES: tuple[str, ...] = ("auto", "strict", "process")
SANDBOX_WORKDIR = "/sandbox"
SANDBOX_DATA = "/data"
NOBODY = 65534
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")
POLL_S = 0.1
WATCH_EVERY_S = 0.25  # memory / disk polling when no cgroup does it
# What a Python run needs from /etc (the dynamic linker's cache, time zones); nothing else of /etc is shown.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates")


@dataclass(frozen=True)
class Limits:
    """What one run may use, all its processes together."""

    memory_mb: int | None = None  # None: no memory limit (GPU runs: CUDA maps huge virtual ranges)
    pids: int = 512  # processes and threads
    disk_mb: int = 2048  # bytes written: each of /sandbox and /tmp, and any one file (log, outputs)


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed command ended, as the parent saw it."""

    exit_code: int | None  # None when it was killed by us; negative: killed by that signal
    timed_out: bool
    cancelled: bool
    duration_s: float
    log_path: Path
    log_tail: str
    isolation: Isolation = "process"
    peak_memory_mb: float | None = None
    limit_hit: str | None = None  # "memory", "disk" or "pids" when the run hit that limit
    notes: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------- isolation


def resolve_isolation(policy: str = "auto") -> Isolation:
    """The isolation a run gets under `policy`; IsolationUnavailable when "strict" cannot be honoured."""
    if policy not in ISOLATION_POLICIES:
        raise IsolationUnavailable(f"isolation must be one of {', '.join(ISOLATION_POLICIES)}, not {policy!r}")
    if policy == "process":
        return "process"
    problem = bwrap_problem()
    if problem is None:
        return "bwrap"
    if policy == "strict":
        raise IsolationUnavailable(f"isolation = \"strict\" but the sandbox is unavailable: {problem}")
    return "process"


def isolation_warning(isolation: Isolation, policy: str = "auto") -> str | None:
    """The one line to show at start when runs are not sandboxed (None when they are, or were asked not to be)."""
    if isolation == "bwrap":
        return None
    if policy == "process":
        return "runs are not sandboxed (isolation = \"process\"): generated code can read and write what you can"
    return (f"runs are not sandboxed ({bwrap_problem()}); generated code runs as a plain child process. "
            "Set [executor] isolation = \"strict\" to refuse this.")


@functools.cache
def bwrap_problem() -> str | None:
    """Why the bubblewrap sandbox cannot be used here, or None when it works (probed once per process)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap sandboxes need Linux, this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        probe = subprocess.run([*_bwrap_args(_probe_mounts()), sys.executable, "-c", "pass"],
                               env=scrubbed_env(SANDBOX_WORKDIR), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not start: {exc}"
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bwrap cannot create a sandbox here ({detail}; are user namespaces enabled?)"
    return None


# ------------------------------------------------------------------------------------------- environment


def scrubbed_env(workdir: Path | str, extra_env: Mapping[str, str] | None = None, threads: int | None = None,
                 device: str | None = None, base: Mapping[str, str] | None = None,
                 tmpdir: str | None = None) -> dict[str, str]:
    """The run's environment: the allowlist from `base` (default os.environ) plus what the run needs."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in ENV_ALLOWLIST if k in base}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    if tmpdir is None:
        tmp = Path(workdir) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        tmpdir = str(tmp)
    env.update(HOME=str(workdir), TMPDIR=tmpdir, PYTHONUNBUFFERED="1", PYTHONHASHSEED="0",
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


# ------------------------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class _Mount:
    source: str
    target: str
    kind: Literal["ro", "rw", "dev", "symlink", "tmpfs"]


def _runtime_roots() -> list[str]:
    """Folders the interpreter needs, read-only: its prefixes and site-packages (never the package tree).

    Only install locations: other import-path entries (the script's folder, PYTHONPATH, the current
    folder) may be anything, /tmp or $HOME included, so they are not shown.
    """
    import site

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).parent)}
    roots |= set(site.getsitepackages())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and user_site in sys.path:
        roots.add(user_site)
    resolved = {str(Path(r).resolve()) for r in roots} | roots
    usable = sorted(r for r in resolved if r and Path(r).is_dir())
    return [r for r in usable if not any(r != o and _inside(Path(r), Path(o)) for o in usable)]


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _system_mounts(network: bool, device: str | None) -> list[_Mount]:
    mounts = [_Mount("/usr", "/usr", "ro")]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            mounts.append(_Mount(os.readlink(top), top, "symlink"))  # merged /usr: recreated, not bound
        elif os.path.isdir(top):
            mounts.append(_Mount(top, top, "ro"))
    for path in ETC_FILES + (ETC_NETWORK if network else ()):
        if os.path.exists(path):
            mounts.append(_Mount(path, path, "ro"))
    if device and device.startswith("cuda"):  # unmeasured on a GPU so far: see domains/ml_training/README.md
        mounts += [_Mount(str(p), str(p), "dev") for p in sorted(Path("/dev").glob("nvidia*"))]
        if os.path.isdir("/sys"):
            mounts.append(_Mount("/sys", "/sys", "ro"))
    package = _package_dir()
    for root in _runtime_roots():
        mounts.append(_Mount(root, root, "ro"))
    if any(_inside(package, Path(m.source)) for m in mounts if m.kind == "ro"):
        mounts.append(_Mount("", str(package), "tmpfs"))  # hide an installed package tree
    return mounts


def _probe_mounts() -> list[_Mount]:
    return _system_mounts(network=False, device=None)


def _bwrap_args(mounts: Sequence[_Mount], network: bool = False, limits: Limits | None = None) -> list[str]:
    """The bwrap command line up to the command itself."""
    limits = limits or Limits()
    size = str(int(limits.disk_mb) * 2**20)
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not network:
        args.append("--unshare-net")
    as_root = os.geteuid() == 0 and shutil.which("setpriv") is not None
    if not as_root:
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    args += ["--cap-drop", "ALL"]
    if as_root:  # bwrap keeps only what setpriv needs to become nobody; setpriv then drops it too
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    # tmpfs first: a later bind under the same path (a venv in /tmp) must stay visible on top of it.
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
             "--perms", "1777", "--size", size, "--tmpfs", SANDBOX_WORKDIR]
    created: set[str] = {"/", "/tmp", SANDBOX_WORKDIR, "/proc", "/dev"}
    for mount in mounts:
        args += _parents(mount.target, created)
        if mount.kind == "symlink":
            args += ["--symlink", mount.source, mount.target]
        elif mount.kind == "tmpfs":
            args += ["--tmpfs", mount.target]
        elif mount.kind == "dev":
            args += ["--dev-bind", mount.source, mount.target]
        else:
            args += ["--ro-bind" if mount.kind == "ro" else "--bind", mount.source, mount.target]
    args += ["--chdir", SANDBOX_WORKDIR]
    if as_root:
        args += ["--", "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs",
                 "--bounding-set=-all", "--inh-caps=-all"]
    return [*args, "--"]


def _parents(target: str, created: set[str]) -> list[str]:
    """`--dir` for each missing ancestor of `target`, world-readable (bwrap would copy the host's modes)."""
    args: list[str] = []
    parts = Path(target).parts
    for depth in range(2, len(parts)):
        parent = str(Path(*parts[:depth]))
        if parent not in created:
            created.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


# ------------------------------------------------------------------------------------------- the sandbox


class Sandbox:
    """One run's isolated working copy: its inputs, its data, its outputs, its limits."""

    def __init__(self, workdir: Path, *, isolation: Isolation, inputs: Mapping[str, str | Path] | None = None,
                 data: Mapping[str, Path] | None = None, outputs: Sequence[str] = (),
                 limits: Limits | None = None, network: bool = False, device: str | None = None,
                 threads: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.isolation: Isolation = isolation
        self.data = {name: Path(path) for name, path in (data or {}).items()}
        self.outputs = tuple(outputs)
        self.limits = limits or Limits()
        self.network, self.device, self.threads = network, device, threads
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, content in (inputs or {}).items():
            self._place(name, content)
        for name in self.outputs:
            self._make_output(name)
        self.inputs = tuple(inputs or ())

    # -- where things are, as the run sees them ----------------------------------------------------

    @property
    def work(self) -> str:
        """The run's working folder, as the run sees it."""
        return SANDBOX_WORKDIR if self.isolation == "bwrap" else str(self.workdir)

    def data_path(self, name: str) -> str:
        """Where data `name` is, as the run sees it."""
        return f"{SANDBOX_DATA}/{name}" if self.isolation == "bwrap" else str(self.data[name])

    def output_path(self, name: str) -> Path:
        """The host file behind output `name`."""
        return self.workdir / name

    def remove(self) -> None:
        """Delete the working copy (inputs, outputs, scratch) from the host."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running -----------------------------------------------------------------------------------

    def run(self, command: Sequence[str], log_path: Path, timeout_s: float | None = None,
            env: Mapping[str, str] | None = None, cancel: threading.Event | None = None,
            tail_chars: int = 4000) -> SandboxResult:
        """Run `command` in the sandbox; never raises for the command's own failures."""
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        group = cgroups.RunGroup.create(f"run-{uuid.uuid4().hex[:12]}", self.limits.memory_mb, self.limits.pids)
        try:
            run_env = self._env(env)
            argv = [*self._launcher(group), *_resolved(self._argv(command), run_env, self._cwd())]
            with open(log_path, "ab") as log:
                # No preexec_fn: Python code between fork and exec in this multi-threaded process can crash
                # the child (core/launcher.py says how); the launcher sets the limits after exec instead.
                proc = subprocess.Popen(argv, cwd=self._cwd(), env=run_env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                watch = _Watch(proc, group, self.limits, self.workdir if self.isolation == "process" else None)
                ended = watch.until_done(timeout_s, cancel)
        finally:
            peak = group.peak_memory_mb() if group else None
            hit = watch.limit_hit if "watch" in locals() else None
            if group is not None:
                hit = hit or _group_limit_hit(group)
                group.kill()
                group.remove()
        code = None if ended in ("timeout", "cancelled") else proc.returncode
        return SandboxResult(exit_code=code, timed_out=ended == "timeout", cancelled=ended == "cancelled",
                             duration_s=watch.duration_s, log_path=log_path,
                             log_tail=read_tail(log_path, tail_chars), isolation=self.isolation,
                             peak_memory_mb=peak if peak is not None else watch.peak_mb,
                             limit_hit=hit or _limit_in_log(code, log_path), notes=watch.notes)

    # -- internals ---------------------------------------------------------------------------------

    def _place(self, name: str, content: str | Path) -> None:
        target = self.workdir / name
        if target.exists():
            target.chmod(0o644)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)
        target.chmod(0o444)

    def _make_output(self, name: str) -> None:
        target = self.workdir / name
        target.unlink(missing_ok=True)
        target.touch(mode=0o600)
        if self.isolation == "bwrap" and os.geteuid() == 0:
            os.chown(target, NOBODY, NOBODY)  # the run writes it as nobody

    def _cwd(self) -> Path:
        return self.workdir

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        if self.isolation == "bwrap":
            return scrubbed_env(SANDBOX_WORKDIR, extra, self.threads, self.device, tmpdir="/tmp")
        return scrubbed_env(self.workdir, extra, self.threads, self.device)

    def _argv(self, command: Sequence[str]) -> list[str]:
        if self.isolation != "bwrap":
            return list(command)
        mounts = _system_mounts(self.network, self.device)
        mounts += [_Mount(str((self.workdir / n).resolve()), f"{SANDBOX_WORKDIR}/{n}", "ro") for n in self.inputs]
        mounts += [_Mount(str(self.output_path(n).resolve()), f"{SANDBOX_WORKDIR}/{n}", "rw") for n in self.outputs]
        mounts += [_Mount(str(p.resolve()), f"{SANDBOX_DATA}/{n}", "ro") for n, p in self.data.items()]
        return [*_bwrap_args(mounts, self.network, self.limits), *command]

    def _launcher(self, group: cgroups.RunGroup | None) -> list[str]:
        """The command line of core/launcher.py that enters the cgroup and sets the rlimits, up to `--`."""
        args = [sys.executable, "-I", "-S", str(Path(launcher.__file__).resolve())]
        for path in group.join_paths() if group else ():
            args += ["--cgroup", path]
        if resource is None:
            return [*args, "--"]
        fsize = int(self.limits.disk_mb) * 2**20
        # A cgroup limits the run's real memory; RLIMIT_AS (address space, per process) is only the fallback:
        # torch and OpenBLAS reserve far more address space than they touch.
        memory = None if self.limits.memory_mb is None or group else int(self.limits.memory_mb) * 2**20
        nproc = None if group else self._nproc_limit()
        args += ["--rlimit", "CORE=0", "--rlimit", f"FSIZE={fsize}"]
        if memory is not None:
            args += ["--rlimit", f"AS={memory}"]
        if nproc is not None:
            args += ["--rlimit", f"NPROC={nproc}"]
        return [*args, "--"]

    def _nproc_limit(self) -> int | None:
        """RLIMIT_NPROC where no cgroup counts the run's processes: the run's uid's count now plus the limit.

        As root a bwrap run becomes nobody, whose processes the limit then counts; a plain child process of
        root is not limited (root ignores RLIMIT_NPROC), nor is one where there is no /proc to count (macOS).
        """
        if not os.path.isdir("/proc"):
            return None
        if os.geteuid() != 0:
            return _user_processes(os.getuid()) + self.limits.pids
        if self.isolation == "bwrap":
            return _user_processes(NOBODY) + self.limits.pids
        return None


def _user_processes(uid: int) -> int:
    """Processes (threads included) `uid` runs now: RLIMIT_NPROC counts them all, not just the run's."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def _resolved(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> list[str]:
    """`command` with its program as a path, found as Popen would find it (FileNotFoundError if it is not)."""
    program = command[0]
    if os.sep in program:
        found = program if os.path.exists(Path(cwd) / program) else None  # an absolute path stays itself
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", program)
    return [found, *command[1:]]


def _group_limit_hit(group: cgroups.RunGroup) -> str | None:
    if group.hit_memory_limit():
        return "memory"
    try:
        events = (group.pids_dir / "pids.events").read_text().split()
        if len(events) >= 2 and int(events[1]) > 0:
            return "pids"
    except (OSError, ValueError):
        pass
    return None


def _limit_in_log(exit_code: int | None, log_path: Path) -> str | None:
    if exit_code == -signal.SIGXFSZ:
        return "disk"
    tail = read_tail(log_path, 2000)
    if "No space left on device" in tail or "File too large" in tail:
        return "disk"
    return None


# ------------------------------------------------------------------------------------------- watching


class _Watch:
    """The parent's eye on a running sandbox: timeout, cancel, and (without a cgroup) memory and disk."""

    def __init__(self, proc: subprocess.Popen, group: cgroups.RunGroup | None, limits: Limits,
                 disk_dir: Path | None) -> None:
        self.proc, self.group, self.limits, self.disk_dir = proc, group, limits, disk_dir
        self.start = time.monotonic()
        self.duration_s = 0.0
        self.peak_mb: float | None = None if group or not os.path.isdir("/proc") else 0.0
        self.limit_hit: str | None = None
        self.notes: tuple[str, ...] = ()

    def until_done(self, timeout_s: float | None, cancel: threading.Event | None) -> str:
        """'exited', 'timeout', 'cancelled' or 'limit'; the process tree is dead when this returns."""
        ended, next_watch = "exited", 0.0
        try:
            while self.proc.poll() is None:
                now = time.monotonic()
                if timeout_s is not None and now - self.start > timeout_s:
                    ended = "timeout"
                    break
                if cancel is not None and cancel.is_set():
                    ended = "cancelled"
                    break
                if self.group is None and now >= next_watch:
                    next_watch = now + WATCH_EVERY_S
                    if self._over_limits():
                        ended = "limit"
                        break
                time.sleep(POLL_S)
        finally:
            self.duration_s = time.monotonic() - self.start
            # Always: a finished parent may have left descendants (bwrap: its pid namespace dies with it, but
            # asynchronously). Kill what can be seen of the tree and wait until it is gone.
            tree = _descendants(self.proc.pid)
            kill_group(self.proc.pid)
            for pid in tree:
                _kill(pid)
            self.proc.wait()
            _wait_gone(tree)
        return ended

    def _over_limits(self) -> bool:
        rss = _tree_rss_mb(self.proc.pid)
        self.peak_mb = max(self.peak_mb or 0.0, rss)
        if self.limits.memory_mb is not None and rss > self.limits.memory_mb:
            self.limit_hit = "memory"
            return True
        if self.disk_dir is not None and _folder_mb(self.disk_dir) > self.limits.disk_mb:
            self.limit_hit = "disk"
            return True
        return False


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids: list[int], wait_s: float = 10.0) -> None:
    """Wait until every pid has exited (absent or a zombie), at most `wait_s`."""
    deadline = time.monotonic() + wait_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                        break
            except (OSError, IndexError):
                break
            time.sleep(0.01)


def _process_table() -> tuple[dict[int, list[int]], dict[int, int]]:
    """(children by parent pid, resident bytes by pid) from /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    if not os.path.isdir("/proc"):
        return children, rss
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * page
    return children, rss


def _descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root`'s descendants now, nearest first (not `root` itself)."""
    children = _process_table()[0] if children is None else children
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and all its descendants, MiB (from /proc; 0 where there is none: macOS)."""
    children, rss = _process_table()
    return sum(rss.get(pid, 0) for pid in [root, *_descendants(root, children)]) / 2**20


def _folder_mb(folder: Path, max_entries: int = 100_000) -> float:
    total, seen = 0, 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            seen += 1
            if seen > max_entries:
                return float("inf")  # a run that makes this many files is over any sane limit
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total / 2**20


def read_tail(path: Path, chars: int = 4000) -> str:
    """The last `chars` characters of a (possibly large, possibly binary-garbled) log file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


def run_sandboxed(command: Sequence[str], cwd: Path, log_path: Path, timeout_s: float | None = None,
                  extra_env: Mapping[str, str] | None = None, threads: int | None = None,
                  device: str | None = None, memory_limit_mb: int | None = None,
                  cancel: threading.Event | None = None, tail_chars: int = 4000,
                  isolation: Isolation = "process", limits: Limits | None = None) -> SandboxResult:
    """Run `command` with the files already in `cwd` (a one-shot Sandbox over that folder)."""
    limits = limits or Limits(memory_mb=memory_limit_mb)
    inputs = {p.name: p for p in Path(cwd).iterdir() if p.is_file()} if isolation == "bwrap" else {}
    box = _FolderSandbox(Path(cwd), isolation=isolation, inputs=inputs, limits=limits, device=device,
                         threads=threads)
    return box.run(command, log_path, timeout_s, extra_env, cancel, tail_chars)


class _FolderSandbox(Sandbox):
    """A Sandbox whose inputs are the files already in its folder (they are bound, not copied)."""

    def _place(self, name: str, content: str | Path) -> None:
        pass
