"""core/sandbox.py: scrubbed environment, process-group kill, memory limit, logs."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from ledgerlab.core.sandbox import cuda_visible_devices, run_sandboxed, scrubbed_env

PY = sys.executable


def _gone(pid: int, wait_s: float = 3.0) -> bool:
    """True once `pid` no longer runs (absent, or a zombie waiting for init)."""
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


def test_scrubbed_env_keeps_only_the_allowlist(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "LANG": "C.UTF-8", "OPENAI_API_KEY": "sk-secret", "AWS_SECRET_ACCESS_KEY": "x",
            "GITHUB_TOKEN": "t", "HOME": "/root", "PYTHONPATH": "/evil", "CUDA_VISIBLE_DEVICES": "0,1"}
    env = scrubbed_env(tmp_path, {"LEDGERLAB_SEED": "3"}, threads=2, device="cpu", base=base)
    assert env["PATH"] == "/bin" and env["LANG"] == "C.UTF-8" and env["LEDGERLAB_SEED"] == "3"
    assert env["HOME"] == str(tmp_path) and env["TMPDIR"].startswith(str(tmp_path))
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    for secret in ("OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "PYTHONPATH"):
        assert secret not in env
    assert scrubbed_env(tmp_path, device="cuda:1", base=base)["CUDA_VISIBLE_DEVICES"] == "1"
    assert scrubbed_env(tmp_path, base=base)["CUDA_VISIBLE_DEVICES"] == "0,1"  # no device: pass through


def test_cuda_visible_devices() -> None:
    assert cuda_visible_devices("cuda") == "0"
    assert cuda_visible_devices("cuda:3") == "3"
    assert cuda_visible_devices("mps") == ""


def test_child_cannot_see_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-7f3a9")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-7f3a9")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=30,
                           extra_env={"LEDGERLAB_SEED": "7"}, threads=1)
    assert result.exit_code == 0 and not result.timed_out
    seen = json.loads(result.log_tail.strip().splitlines()[-1])
    assert "OPENAI_API_KEY" not in seen and "ANTHROPIC_API_KEY" not in seen
    assert "sk-test-7f3a9" not in result.log_tail
    assert seen["HOME"] == str(tmp_path) and seen["LEDGERLAB_SEED"] == "7" and seen["OMP_NUM_THREADS"] == "1"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = ("import subprocess, time\n"
            "p = subprocess.Popen(['sleep', '300'])\n"
            "open('grandchild.pid', 'w').write(str(p.pid))\n"
            "print('spawned', flush=True)\n"
            "while True: time.sleep(0.01)\n")
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=1.5)
    assert result.timed_out and result.exit_code is None
    assert 1.5 <= result.duration_s < 10
    assert "spawned" in result.log_tail
    assert _gone(int((tmp_path / "grandchild.pid").read_text()))


def test_grandchild_left_behind_is_killed_after_a_normal_exit(tmp_path: Path) -> None:
    code = ("import subprocess\n"
            "p = subprocess.Popen(['sleep', '300'])\n"
            "open('grandchild.pid', 'w').write(str(p.pid))\n")
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=30)
    assert result.exit_code == 0 and not result.timed_out
    assert _gone(int((tmp_path / "grandchild.pid").read_text()))


def test_memory_limit_stops_a_huge_allocation(tmp_path: Path) -> None:
    code = "x = bytearray(3 * 2**30)\nprint('allocated')"
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=30,
                           memory_limit_mb=1024)
    assert result.exit_code == 1
    assert "MemoryError" in result.log_tail and "allocated" not in result.log_tail


def test_exit_code_and_log_tail(tmp_path: Path) -> None:
    code = "import sys\nprint('x' * 10000)\nprint('last words')\nsys.exit(5)"
    result = run_sandboxed([PY, "-c", code], cwd=tmp_path, log_path=tmp_path / "run" / "log.txt", timeout_s=30,
                           tail_chars=100)
    assert result.exit_code == 5
    assert result.log_tail.endswith("last words\n") and len(result.log_tail) == 100
    assert (tmp_path / "run" / "log.txt").stat().st_size > 10000


def test_cancel_stops_the_run(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = run_sandboxed([PY, "-c", "import time; time.sleep(60)"], cwd=tmp_path,
                           log_path=tmp_path / "log.txt", timeout_s=60, cancel=cancel)
    assert result.cancelled and not result.timed_out and result.duration_s < 10


def test_environment_is_not_inherited_through_os_environ_changes(tmp_path: Path) -> None:
    os.environ["LEDGERLAB_TEST_LEAK"] = "leak"
    try:
        result = run_sandboxed([PY, "-c", "import os; print(os.environ.get('LEDGERLAB_TEST_LEAK', 'absent'))"],
                               cwd=tmp_path, log_path=tmp_path / "log.txt", timeout_s=30)
    finally:
        del os.environ["LEDGERLAB_TEST_LEAK"]
    assert result.log_tail.strip() == "absent"
