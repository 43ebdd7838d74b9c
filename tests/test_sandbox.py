"""core/sandbox.py: the isolation policy, the scrubbed environment, and real runs in both isolations.

Process mode (a child in its own session) runs everywhere; the bubblewrap tests skip, saying why, where
`bwrap_problem()` finds no usable sandbox. Every run is a real process; nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from host_processes import DEADLINE_S, processes_with, until

from ledgerlab.core import sandbox
from ledgerlab.core.sandbox import (
    NOBODY,
    SANDBOX_WORKDIR,
    Limits,
    Sandbox,
    SandboxResult,
    bwrap_problem,
    cuda_visible_devices,
    isolation_warning,
    resolve_isolation,
    run_sandboxed,
    scrubbed_env,
)
from ledgerlab.errors import IsolationUnavailable

PY = sys.executable
needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None,
                                 reason=f"the bubblewrap sandbox is unavailable here: {bwrap_problem()}")
BOTH = [pytest.param("process", id="process"), pytest.param("bwrap", id="bwrap", marks=needs_bwrap)]


def _gone(pid: int, wait_s: float = DEADLINE_S) -> bool:
    """True once `pid` no longer runs (absent, or a zombie waiting for init); False if it still runs at the
    deadline (generous: on a loaded machine the kill lands late, and a dead process returns at once)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in state:
            return True
        time.sleep(0.05)
    return False


def _box(tmp_path: Path, isolation: str, **options: object) -> Sandbox:
    return Sandbox(tmp_path / "work", isolation=isolation, **options)  # type: ignore[arg-type]


def _run(box: Sandbox, code: str, tmp_path: Path, timeout_s: float = 60, **options: object) -> SandboxResult:
    return box.run([PY, "-c", code], log_path=tmp_path / "run.log", timeout_s=timeout_s, **options)  # type: ignore[arg-type]


def _last_json(result: SandboxResult) -> dict:
    return json.loads(result.log_tail.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- policy


def test_isolation_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_isolation("process") == "process"
    with pytest.raises(IsolationUnavailable, match="isolation must be one of"):
        resolve_isolation("docker")
    # The probe's answer decides "auto" and "strict" (the probe itself is exercised by the bwrap tests).
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed")
    assert resolve_isolation("auto") == "process"
    with pytest.raises(IsolationUnavailable, match="strict.*bubblewrap is not installed"):
        resolve_isolation("strict")
    assert "bubblewrap is not installed" in (isolation_warning("process", "auto") or "")
    assert "isolation = \"process\"" in (isolation_warning("process", "process") or "")
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: None)
    assert resolve_isolation("auto") == resolve_isolation("strict") == "bwrap"
    assert isolation_warning("bwrap", "auto") is None


def test_limits_defaults() -> None:
    limits = Limits()
    assert limits.memory_mb is None and limits.pids > 0 and limits.disk_mb > 0


# ------------------------------------------------------------------------------------------- environment


def test_scrubbed_env_keeps_only_the_allowlist(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "LANG": "C.UTF-8", "OPENAI_API_KEY": "sk-secret", "AWS_SECRET_ACCESS_KEY": "x",
            "GITHUB_TOKEN": "t", "HOME": "/root", "PYTHONPATH": "/evil", "CUDA_VISIBLE_DEVICES": "0,1"}
    env = scrubbed_env(tmp_path, {"LEDGERLAB_SEED": "3"}, threads=2, device="cpu", base=base)
    assert env["PATH"] == "/bin" and env["LANG"] == "C.UTF-8" and env["LEDGERLAB_SEED"] == "3"
    assert env["HOME"] == str(tmp_path) and env["TMPDIR"] == str(tmp_path / "tmp")
    assert (tmp_path / "tmp").is_dir()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    for secret in ("OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "PYTHONPATH"):
        assert secret not in env
    assert scrubbed_env(tmp_path, device="cuda:1", base=base)["CUDA_VISIBLE_DEVICES"] == "1"
    assert scrubbed_env(tmp_path, base=base)["CUDA_VISIBLE_DEVICES"] == "0,1"  # no device: pass through


def test_scrubbed_env_with_a_tmpdir_creates_nothing(tmp_path: Path) -> None:
    env = scrubbed_env(SANDBOX_WORKDIR, tmpdir="/tmp", base={"PATH": "/usr/bin"})
    assert env["HOME"] == SANDBOX_WORKDIR and env["TMPDIR"] == "/tmp" and env["PATH"] == "/usr/bin"
    scrubbed_env(tmp_path / "absent", tmpdir="/tmp", base={})
    assert not (tmp_path / "absent").exists()


def test_cuda_visible_devices() -> None:
    assert cuda_visible_devices("cuda") == "0"
    assert cuda_visible_devices("cuda:3") == "3"
    assert cuda_visible_devices("mps") == ""


# ------------------------------------------------------------------------------------------- both isolations


@pytest.mark.parametrize("isolation", BOTH)
def test_the_run_sees_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolation: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-7f3a9")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-7f3a9")
    code = ("import json, os\n"
            "try:\n    init = open('/proc/1/environ', 'rb').read().decode(errors='replace')\n"
            "except OSError as exc:\n    init = str(exc)\n"
            "print(json.dumps({'env': dict(os.environ), 'init': init, 'cwd': os.getcwd(), 'uid': os.getuid()}))\n")
    box = _box(tmp_path, isolation, threads=1)
    result = _run(box, code, tmp_path, env={"LEDGERLAB_SEED": "7"})
    assert result.exit_code == 0 and not result.timed_out and result.isolation == isolation, result.log_tail
    seen = _last_json(result)
    assert "OPENAI_API_KEY" not in seen["env"] and "ANTHROPIC_API_KEY" not in seen["env"]
    assert "sk-test-7f3a9" not in result.log_tail
    assert seen["env"]["LEDGERLAB_SEED"] == "7" and seen["env"]["OMP_NUM_THREADS"] == "1"
    assert seen["env"]["HOME"] == seen["cwd"] == box.work
    if isolation == "bwrap":
        assert box.work == SANDBOX_WORKDIR and seen["env"]["TMPDIR"] == "/tmp" and seen["uid"] == NOBODY
        assert "LEDGERLAB_SEED" in seen["init"] or "denied" in seen["init"]  # bwrap itself got the scrubbed env
    else:
        assert box.work == str(tmp_path / "work")


@pytest.mark.parametrize("isolation", BOTH)
def test_timeout_kills_every_process_of_the_run(tmp_path: Path, isolation: str) -> None:
    marker = f"ledgerlab-test-{uuid.uuid4().hex}"
    code = ("import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}])\n"
            "print('spawned', flush=True)\n"
            "while True: time.sleep(0.01)\n")
    # The timeout leaves room for a slow start; the spawn is checked below, so the test cannot pass vacuously.
    result = _run(_box(tmp_path, isolation), code, tmp_path, timeout_s=4)
    assert result.timed_out and result.exit_code is None and not result.cancelled
    assert 4 <= result.duration_s < 60
    assert "spawned" in result.log_tail
    until("every process of the run to be gone", lambda: not processes_with(marker))


@pytest.mark.parametrize("isolation", BOTH)
def test_peak_memory_is_measured_by_the_parent(tmp_path: Path, isolation: str) -> None:
    # 200 MiB written (resident, not just reserved); the run's own claim in its log plays no part.
    code = "x = b'x' * (200 * 2**20)\nprint('peak_memory_mb: 1.0', flush=True)\n"
    result = _run(_box(tmp_path, isolation, limits=Limits(memory_mb=2048)), code, tmp_path)
    assert result.exit_code == 0, result.log_tail
    assert result.peak_memory_mb is not None and result.peak_memory_mb >= 150
    assert result.limit_hit is None


@pytest.mark.parametrize("isolation", BOTH)
def test_an_output_file_comes_back_and_inputs_go_in(tmp_path: Path, isolation: str) -> None:
    data = tmp_path / "train.bin"
    data.write_bytes(b"data-bytes")
    box = _box(tmp_path, isolation, inputs={"prog.py": "print('input ran')\n", "lib.txt": data},
               data={"train.bin": data}, outputs=("out.bin",))
    code = ("import os, runpy, sys\n"
            "runpy.run_path('prog.py')\n"
            "payload = open(sys.argv[1], 'rb').read() + open('lib.txt', 'rb').read()\n"
            "open('out.bin', 'wb').write(payload)\n")
    result = box.run([PY, "-c", code, box.data_path("train.bin")], log_path=tmp_path / "run.log", timeout_s=60)
    assert result.exit_code == 0, result.log_tail
    assert "input ran" in result.log_tail
    assert box.output_path("out.bin").read_bytes() == b"data-bytesdata-bytes"
    if isolation == "bwrap":
        assert box.data_path("train.bin") == "/data/train.bin"
    box.remove()
    assert not box.workdir.exists() and data.exists()


# ------------------------------------------------------------------------------------------- bubblewrap only


@needs_bwrap
def test_bwrap_inputs_and_data_are_read_only_and_scratch_stays_inside(tmp_path: Path) -> None:
    data = tmp_path / "train.bin"
    data.write_bytes(b"training bytes")
    box = _box(tmp_path, "bwrap", inputs={"harness.py": "X = 1\n"}, data={"train.bin": data}, outputs=("out",))
    code = ("import json, os\n"
            "tried = {}\n"
            "def attempt(name, action):\n"
            "    try:\n        action()\n        tried[name] = 'done'\n"
            "    except OSError as exc:\n        tried[name] = type(exc).__name__\n"
            "attempt('append input', lambda: open('harness.py', 'a').write('#'))\n"
            "attempt('chmod input', lambda: os.chmod('harness.py', 0o666))\n"
            "open('scratch', 'w').close()\n"
            "attempt('replace input', lambda: os.replace('scratch', 'harness.py'))\n"
            "attempt('write data', lambda: open('/data/train.bin', 'ab').write(b'x'))\n"
            "attempt('scratch', lambda: open('/sandbox/notes.txt', 'w').write('hi'))\n"
            f"attempt('host folder', lambda: os.listdir({str(tmp_path)!r}))\n"
            f"attempt('package', lambda: open({str(sandbox._package_dir() / 'core' / 'sandbox.py')!r}))\n"
            "print(json.dumps(tried))\n")
    result = _run(box, code, tmp_path)
    assert result.exit_code == 0, result.log_tail
    tried = _last_json(result)
    assert tried["scratch"] == "done"
    for name in ("append input", "chmod input", "replace input", "write data"):
        assert tried[name] != "done", (name, tried)
    assert tried["host folder"] == tried["package"] == "FileNotFoundError"
    assert (box.workdir / "harness.py").read_text() == "X = 1\n" and data.read_bytes() == b"training bytes"
    assert not (box.workdir / "notes.txt").exists() and not (box.workdir / "scratch").exists()  # tmpfs


@needs_bwrap
def test_bwrap_disk_limit_stops_a_run_that_writes_too_much(tmp_path: Path) -> None:
    code = "open('big', 'wb').write(b'x' * (64 * 2**20))\nprint('wrote it')\n"
    result = _run(_box(tmp_path, "bwrap", limits=Limits(disk_mb=16)), code, tmp_path)
    assert result.exit_code not in (0, None) and result.limit_hit == "disk", result.log_tail
    assert "wrote it" not in result.log_tail


@needs_bwrap
def test_run_sandboxed_in_bwrap_shows_the_folder_read_only(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("import os\nprint('hello from', os.getcwd())\n")
    code = ("import os, runpy\nrunpy.run_path('hello.py')\n"
            "print('writable' if os.access('hello.py', os.W_OK) else 'read-only')\n")
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path.parent / f"{tmp_path.name}.log",
                           timeout_s=60, isolation="bwrap")
    assert result.exit_code == 0 and result.isolation == "bwrap", result.log_tail
    assert f"hello from {SANDBOX_WORKDIR}\n" in result.log_tail and "read-only" in result.log_tail


# ------------------------------------------------------------------------------------------- run_sandboxed (process)


def test_grandchild_left_behind_is_killed_after_a_normal_exit(tmp_path: Path) -> None:
    code = ("import subprocess\n"
            "p = subprocess.Popen(['sleep', '300'])\n"
            "open('grandchild.pid', 'w').write(str(p.pid))\n")
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=60)
    assert result.exit_code == 0 and not result.timed_out and result.isolation == "process"
    assert _gone(int((tmp_path / "grandchild.pid").read_text()))


def test_memory_limit_stops_a_huge_allocation(tmp_path: Path) -> None:
    code = "x = bytearray(3 * 2**30)\nprint('allocated')"
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=60,
                           memory_limit_mb=1024)
    assert result.exit_code not in (0, None)
    assert "allocated" not in result.log_tail
    assert "MemoryError" in result.log_tail or result.limit_hit == "memory"


def test_exit_code_and_log_tail(tmp_path: Path) -> None:
    code = "import sys\nprint('x' * 10000)\nprint('last words')\nsys.exit(5)"
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "run" / "log.txt", timeout_s=60,
                           tail_chars=100)
    assert result.exit_code == 5
    assert result.log_tail.endswith("last words\n") and len(result.log_tail) == 100
    assert (tmp_path / "run" / "log.txt").stat().st_size > 10000


def test_cancel_stops_the_run(tmp_path: Path) -> None:
    cancel = threading.Event()
    code = "import time\nprint('started', flush=True)\ntime.sleep(300)"
    log = tmp_path / "log.txt"

    def cancel_once_started() -> None:  # no fixed delay: cancel when the child has visibly started
        deadline = time.monotonic() + 60
        while "started" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=log, timeout_s=120, cancel=cancel)
    assert result.cancelled and not result.timed_out and result.exit_code is None
    assert "started" in result.log_tail


def test_environment_is_not_inherited_through_os_environ_changes(tmp_path: Path) -> None:
    os.environ["LEDGERLAB_TEST_LEAK"] = "leak"
    try:
        result = run_sandboxed([PY, "-c", "import os; print(os.environ.get('LEDGERLAB_TEST_LEAK', 'absent'))"],
                               cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=60)
    finally:
        del os.environ["LEDGERLAB_TEST_LEAK"]
    assert result.log_tail.strip() == "absent"


# ------------------------------------------------------------------------------------------- without cgroups


@pytest.fixture
def no_cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cgroup root with nothing in it: what an unprivileged user without delegation has."""
    from ledgerlab.core import cgroups

    empty = tmp_path / "no-cgroups"
    empty.mkdir()
    monkeypatch.setattr(cgroups, "ROOT", empty)


@pytest.mark.parametrize("isolation", BOTH)
def test_without_cgroups_the_poller_sums_the_runs_memory_and_kills_at_the_cap(
        tmp_path: Path, isolation: str, no_cgroups: None) -> None:
    # Two children of 200 MiB each, each under the 300 MiB cap (RLIMIT_AS alone would let both live).
    child = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(20)"
    code = (f"import subprocess, sys\nkids = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
            "print('CODES', [k.wait() for k in kids], flush=True)\n")
    result = _run(_box(tmp_path, isolation, limits=Limits(memory_mb=300)), code, tmp_path)
    assert result.limit_hit == "memory" and result.exit_code == -9  # killed by the poller, not finished
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 300
    assert "CODES" not in result.log_tail


@needs_bwrap
def test_without_cgroups_a_sandboxed_run_of_root_is_still_process_limited(tmp_path: Path,
                                                                          no_cgroups: None) -> None:
    code = ("import resource, subprocess, sys\nprint('NPROC', resource.getrlimit(resource.RLIMIT_NPROC)[0], flush=True)\n"
            "started = []\ntry:\n    for _ in range(100):\n"
            "        started.append(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']))\n"
            "except OSError as exc:\n    print('REFUSED', len(started), flush=True)\n")
    result = _run(_box(tmp_path, "bwrap", limits=Limits(pids=16)), code, tmp_path)
    assert "REFUSED" in result.log_tail, result.log_tail
    # RLIMIT_NPROC counts all of nobody's tasks: the limit is the 16 plus those running when the run started
    # (other tests' sandboxed runs, threads included), and as those exit this run may start more than 16.
    limit = int(result.log_tail.split("NPROC ")[1].split()[0])
    assert 16 <= limit < 100 and int(result.log_tail.split("REFUSED ")[1].split()[0]) <= limit


# ------------------------------------------------------------------------------------------- the launcher


def _hold_in_a_thread_local(ready: threading.Event, release: threading.Event) -> None:
    """What storage/query.py's parser does: a DuckDB connection that only this thread's threading.local holds."""
    import duckdb

    local = threading.local()
    local.con = duckdb.connect(":memory:", config={"threads": 4})  # worker threads a forked child lacks
    local.con.execute("select count(*) from range(100000)").fetchall()
    ready.set()
    release.wait(120)


@pytest.mark.parametrize("isolation", BOTH)
def test_a_run_starts_while_another_thread_holds_a_duckdb_connection(tmp_path: Path, isolation: str) -> None:
    # The campaign's process has threads. With a preexec_fn, CPython cleared the other threads' states in the
    # forked child; the connection's destructor joined threads the child does not have and the run died of
    # SIGSEGV before it started (exit code -11, empty log). The launcher runs no Python between fork and exec.
    from concurrent.futures import ThreadPoolExecutor

    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_in_a_thread_local, args=(ready, release), daemon=True)
    holder.start()
    try:
        assert ready.wait(60)
        with ThreadPoolExecutor(1) as pool:  # started from a worker thread, as the local executor does
            result = pool.submit(_run, _box(tmp_path, isolation, limits=Limits(memory_mb=2048)),
                                 "print('RAN', flush=True)", tmp_path).result()
    finally:
        release.set()
        holder.join(60)
    assert result.exit_code == 0, result.log_tail
    assert "RAN" in result.log_tail


@pytest.mark.parametrize("isolation", BOTH)
def test_the_launcher_sets_the_limits_and_popen_gets_no_preexec_fn(tmp_path: Path, isolation: str,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    no_cgroups: None) -> None:
    import subprocess

    seen: list[dict] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen:
        seen.append(kwargs)
        return real_popen(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(sandbox.subprocess, "Popen", popen)
    code = ("import json, resource\nprint(json.dumps({n: resource.getrlimit(getattr(resource, 'RLIMIT_' + n))[0] "
            "for n in ('CORE', 'FSIZE', 'AS')}))")
    result = _run(_box(tmp_path, isolation, limits=Limits(memory_mb=2048, disk_mb=64)), code, tmp_path)
    assert result.exit_code == 0, result.log_tail
    assert _last_json(result) == {"CORE": 0, "FSIZE": 64 * 2**20, "AS": 2048 * 2**20}  # AS: no cgroup here
    assert seen and all(kwargs.get("preexec_fn") is None for kwargs in seen)


def test_a_run_whose_cgroup_cannot_be_entered_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledgerlab.core import cgroups, launcher

    missing = tmp_path / "not-a-cgroup"
    monkeypatch.setattr(cgroups.RunGroup, "create",
                        classmethod(lambda cls, *args, **kwargs: cgroups.RunGroup(missing, missing, 2)))
    marker = tmp_path / "ran"
    result = _run(_box(tmp_path, "process"), f"open({str(marker)!r}, 'w').close()", tmp_path)
    assert result.exit_code == launcher.EXIT_SETUP
    assert "limits could not be applied" in result.log_tail and not marker.exists()


def test_a_missing_program_raises_as_popen_would(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _box(tmp_path, "process").run(["no-such-program-ledgerlab"], log_path=tmp_path / "run.log", timeout_s=10)
