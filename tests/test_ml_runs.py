"""Real runs of MLTrainingDomain.run with tiny budgets: finished runs in both isolations, each way a run fails.

A finished run is two sandboxes (training, then the evaluator: ~6-10 s on a CPU); only two tests here get
that far. The others stop in the training sandbox. Hostile runs are tests/test_attacks.py's business.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from host_processes import processes_with, until

from ledgerlab.core import sandbox
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import RunRequest, RunResult
from ledgerlab.core.sandbox import resolve_isolation
from ledgerlab.domains.ml_training.domain import MLTrainingDomain, log_path
from ledgerlab.domains.ml_training.knobs import KNOBS

pytest.importorskip("torch")  # the child processes train with torch

TINY = {"DEPTH": 1, "WIDTH": 64, "HEADS": 2, "SEQ_LEN": 32, "BATCH_SIZE": 4}
LOOP_LINE = "    session.step(loss)\n"


@pytest.fixture(scope="module")
def domain() -> MLTrainingDomain:
    # A token budget keeps the tiny runs exact and fast however busy the machine is.
    return MLTrainingDomain(device="cpu", budget_tokens=4096, eval_tokens=4096, grace=1.0, startup_s=60,
                            threads=1, memory_limit_mb=4096)


@pytest.fixture(scope="module")
def tiny(domain: MLTrainingDomain) -> str:
    files = domain.baseline()
    knobs = {k.name: k for k in KNOBS}
    for name, value in TINY.items():
        files = write_knob(files, knobs[name], value)
    return files["train.py"]


def _workdir(tmp_path: Path) -> Path:
    return tmp_path / ".ledgerlab" / "runs" / uuid.uuid4().hex[:8]


def _run(domain: MLTrainingDomain, tmp_path: Path, source: str, seed: int = 0, workdir: Path | None = None,
         **request: object) -> RunResult:
    workdir = workdir or _workdir(tmp_path)
    return domain.run(RunRequest(run_id=workdir.name, candidate_id="c", files={"train.py": source}, seed=seed,
                                 workdir=workdir, **request))  # type: ignore[arg-type]


def test_end_to_end_runs_finish_with_the_evaluators_val_bpb(domain: MLTrainingDomain, tiny: str,
                                                            tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)
    result = _run(domain, tmp_path, tiny, seed=3, workdir=workdir)
    assert result.status == "finished", result.error + result.log_tail
    assert 3.0 < result.value < 8.5 and result.value == result.metrics["val_bpb"]
    m = result.metrics
    assert m["isolation"] == resolve_isolation("auto")
    assert m["reported_tokens"] == 4096 and m["reported_steps"] == 32 and m["seq_len"] == 32
    assert m["eval_tokens"] == 4096 and m["num_params"] > 0 and m["peak_memory_mb"] > 0
    assert m["wall_seconds"] > 0 and m["eval_seconds"] > 0
    assert not workdir.exists()  # the working copy is gone; the log stays beside it
    assert Path(result.log_path) == log_path(workdir)
    assert "reported_steps: 32" in Path(result.log_path).read_text()
    assert "--- evaluator ---" in result.log_tail and '"status": "finished"' in result.log_tail


# slow: two ML runs. Fast: the run above (sandboxed where bubblewrap is) and test_nan_loss_diverges_at_the_first_step
# (the "process" fallback) each run the harness and its checks end to end.
@pytest.mark.slow
def test_the_same_seed_gives_the_same_val_bpb_in_either_isolation(domain: MLTrainingDomain, tiny: str,
                                                                  tmp_path: Path) -> None:
    first = _run(domain, tmp_path, tiny, seed=3)
    assert first.status == "finished", first.error + first.log_tail
    kept = _workdir(tmp_path)  # keep_workdir keeps the working copy
    again = _run(domain, tmp_path, tiny, seed=3, workdir=kept, isolation="process", keep_workdir=True)
    assert again.status == "finished", again.error + again.log_tail
    assert again.metrics["isolation"] == "process" and again.value == first.value
    assert {"harness.py", "model.pt2", "train.py"} <= {p.name for p in kept.iterdir()}


def test_syntax_error_is_rejected_before_any_run(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    from ledgerlab.errors import InvalidCandidate

    broken = tiny.replace("def activate(", "def activate((")
    with pytest.raises(InvalidCandidate, match="does not compile"):
        domain.validate({"train.py": broken})
    workdir = _workdir(tmp_path)
    result = _run(domain, tmp_path, broken, workdir=workdir)
    assert result.status == "invalid" and "does not compile" in result.error
    assert not log_path(workdir).exists()  # nothing ran


def test_exception_is_a_crash_and_the_run_sees_no_secrets(domain: MLTrainingDomain, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-7f3a9")
    source = ("import os\nprint('KEY=' + os.environ.get('OPENAI_API_KEY', 'none'))\n"
              "print('HOME=' + os.environ['HOME'])\nprint('DATA=' + os.environ['LEDGERLAB_DATA'])\n"
              "raise ValueError('the model exploded')\n")
    workdir = _workdir(tmp_path)
    result = _run(domain, tmp_path, source, workdir=workdir)
    assert result.status == "crashed" and "ValueError: the model exploded" in result.error
    log = Path(result.log_path).read_text()
    assert "KEY=none" in log and "sk-test-7f3a9" not in log
    if resolve_isolation("auto") == "bwrap":
        assert "HOME=/sandbox\n" in log and "DATA=/data/train.bin\n" in log
    else:
        assert f"HOME={workdir}\n" in log and f"DATA={domain.splits().train}\n" in log
    assert not workdir.exists() and result.value is None


def test_strict_isolation_without_a_sandbox_refuses_to_run(domain: MLTrainingDomain, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed")
    workdir = _workdir(tmp_path)
    result = _run(domain, tmp_path, "print('ran')\n", workdir=workdir, isolation="strict")
    assert result.status == "crashed" and result.error.startswith("not run:") and "not installed" in result.error
    assert not log_path(workdir).exists()


def test_infinite_loop_times_out_and_its_processes_die(tmp_path: Path) -> None:
    domain = MLTrainingDomain(device="cpu", budget_s=1, grace=1.0, startup_s=4)
    marker = f"ledgerlab-test-{uuid.uuid4().hex}"
    source = ("import subprocess, sys\n"
              f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}])\n"
              "print('spawned', flush=True)\n"
              "while True:\n    pass\n")
    result = _run(domain, tmp_path, source)
    assert result.status == "timeout" and "killed after 5 s" in result.error
    assert 5 <= result.duration_s < 60
    assert "spawned" in Path(result.log_path).read_text()  # the grandchild existed
    until("the grandchild to be gone", lambda: not processes_with(marker))


def test_nan_loss_diverges_at_the_first_step(tiny: str, tmp_path: Path) -> None:
    domain = MLTrainingDomain(device="cpu", budget_s=120, eval_tokens=4096, threads=1)
    source = tiny.replace(LOOP_LINE, "    loss = loss * float('nan')\n" + LOOP_LINE)
    result = _run(domain, tmp_path, source, isolation="process")  # the fallback (the other runs are sandboxed)
    assert result.status == "diverged" and "at step 1" in result.error
    assert result.duration_s < 100  # did not wait for the 120 s budget


# slow: an ML run. Fast: tests/test_sandbox.py's test_memory_limit_stops_a_huge_allocation (the same limit).
@pytest.mark.slow
def test_huge_allocation_is_out_of_memory(tiny: str, tmp_path: Path) -> None:
    domain = MLTrainingDomain(device="cpu", budget_tokens=4096, threads=1, memory_limit_mb=1024)
    source = tiny.replace("model = GPT(", "hog = torch.ones(3 * 2**30, dtype=torch.uint8)\nmodel = GPT(")
    result = _run(domain, tmp_path, source)  # 3 GiB against a 1 GiB limit
    assert result.status == "crashed" and result.error.startswith("out of memory"), result.error


def test_a_model_that_cannot_be_exported_is_invalid(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    forward = '        """Logits (B, T, vocab) for byte ids idx (B, T), T <= SEQ_LEN."""\n'
    assert forward in tiny
    branchy = forward + "        if idx.float().mean() > 300:  # data-dependent control flow\n            idx = idx * 0\n"
    result = _run(domain, tmp_path, tiny.replace(forward, branchy))
    assert result.status == "invalid" and result.value is None
    assert result.error.startswith("the model cannot be exported with torch.export"), result.error
