"""Real runs of MLTrainingDomain.run with tiny budgets: one finished run, and each way a run can fail."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import RunRequest, RunResult
from ledgerlab.domains.ml_training.domain import MLTrainingDomain
from ledgerlab.domains.ml_training.knobs import KNOBS

pytest.importorskip("torch")  # the child processes train with torch

TINY = {"DEPTH": 1, "WIDTH": 64, "HEADS": 2, "SEQ_LEN": 32, "BATCH_SIZE": 4}
LOOP_LINE = "    session.step(loss)\n"


@pytest.fixture(scope="module")
def domain() -> MLTrainingDomain:
    # A token budget keeps the tiny runs exact and fast however busy the machine is.
    return MLTrainingDomain(device="cpu", budget_tokens=4096, eval_tokens=1024, grace=1.0, startup_s=60,
                            threads=1, memory_limit_mb=4096)


@pytest.fixture(scope="module")
def tiny(domain: MLTrainingDomain) -> str:
    files = domain.baseline()
    knobs = {k.name: k for k in KNOBS}
    for name, value in TINY.items():
        files = write_knob(files, knobs[name], value)
    return files["train.py"]


def _run(domain: MLTrainingDomain, tmp_path: Path, source: str, seed: int = 0, **request: object) -> RunResult:
    run_id = uuid.uuid4().hex[:8]
    workdir = tmp_path / ".ledgerlab" / "runs" / run_id
    return domain.run(RunRequest(run_id=run_id, candidate_id="c", files={"train.py": source}, seed=seed,
                                 workdir=workdir, **request))


def test_end_to_end_run_finishes_with_val_bpb(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    result = _run(domain, tmp_path, tiny, seed=3)
    assert result.status == "finished", result.error + result.log_tail
    assert 3.0 < result.value < 8.5 and result.value == result.metrics["val_bpb"]
    m = result.metrics
    assert m["tokens"] == 4096 and m["steps"] == 32 and m["seed"] == 3 and m["eval_tokens"] == 1024
    assert m["device"] == "cpu" and m["num_params"] > 0 and m["peak_memory_mb"] > 0
    assert Path(result.log_path).name == "run.log" and "val_bpb:" in Path(result.log_path).read_text()
    again = _run(domain, tmp_path, tiny, seed=3)
    assert again.value == result.value  # same seed, same step count: the same number


def test_syntax_error_is_rejected_before_any_run(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    from ledgerlab.core.errors import InvalidCandidate

    broken = tiny.replace("def activate(", "def activate((")
    with pytest.raises(InvalidCandidate, match="does not compile"):
        domain.validate({"train.py": broken})
    result = _run(domain, tmp_path, broken)
    assert result.status == "invalid" and "does not compile" in result.error


def test_exception_is_a_crash(domain: MLTrainingDomain, tmp_path: Path) -> None:
    result = _run(domain, tmp_path, "raise ValueError('the model exploded')\n")
    assert result.status == "crashed" and "ValueError: the model exploded" in result.error


def test_infinite_loop_times_out_and_its_processes_die(tmp_path: Path) -> None:
    domain = MLTrainingDomain(device="cpu", budget_s=1, grace=1.0, startup_s=1.5)
    source = ("import subprocess\n"
              "child = subprocess.Popen(['sleep', '300'])\n"
              "open('grandchild.pid', 'w').write(str(child.pid))\n"
              "while True:\n    pass\n")
    result = _run(domain, tmp_path, source)
    assert result.status == "timeout" and "killed after" in result.error
    assert 2.5 <= result.duration_s < 15
    pid = int(next(tmp_path.rglob("grandchild.pid")).read_text())
    deadline = time.monotonic() + 3
    while Path(f"/proc/{pid}").exists() and "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text():
        assert time.monotonic() < deadline, "the grandchild survived the timeout"
        time.sleep(0.05)


def test_nan_loss_diverges_at_the_first_step(tiny: str, tmp_path: Path) -> None:
    domain = MLTrainingDomain(device="cpu", budget_s=120, eval_tokens=1024, threads=1)
    source = tiny.replace(LOOP_LINE, "    loss = loss * float('nan')\n" + LOOP_LINE)
    result = _run(domain, tmp_path, source)
    assert result.status == "diverged" and "at step 1" in result.error
    assert result.duration_s < 60  # did not wait for the 120 s budget


def test_huge_allocation_is_out_of_memory(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    source = tiny.replace("model = GPT(", "hog = torch.ones(6 * 2**30, dtype=torch.uint8)\nmodel = GPT(")
    result = _run(domain, tmp_path, source)  # 6 GiB against a 4 GiB address-space limit
    assert result.status == "crashed" and result.error.startswith("out of memory")


def test_touching_the_harness_is_invalid(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    sneaky = "import os\nname = 'har' + 'ness' + '.py'\nos.chmod(name, 0o644)\nopen(name, 'a').write('#')\n"
    result = _run(domain, tmp_path, tiny.replace("session = harness.start()", sneaky + "session = harness.start()"))
    assert result.status == "invalid" and "harness.py was modified" in result.error


def test_a_forged_summary_is_invalid(domain: MLTrainingDomain, tmp_path: Path) -> None:
    source = "print('---')\nprint('val' + '_bpb: 0.5')\nprint('signa' + 'ture: ' + 'ab' * 32)\n"
    result = _run(domain, tmp_path, source)
    assert result.status == "invalid" and "not signed" in result.error


def test_a_non_causal_model_is_invalid(domain: MLTrainingDomain, tiny: str, tmp_path: Path) -> None:
    result = _run(domain, tmp_path, tiny.replace("is_causal=True", "is_causal=False"))
    assert result.status == "invalid" and "not causal" in result.error


def test_the_run_cannot_read_api_keys(domain: MLTrainingDomain, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-7f3a9")
    source = "import os\nprint('KEY=' + os.environ.get('OPENAI_API_KEY', 'none'))\nprint('HOME=' + os.environ['HOME'])\n"
    result = _run(domain, tmp_path, source)
    log = Path(result.log_path).read_text()
    assert "KEY=none" in log and "sk-test-7f3a9" not in log
    assert f"HOME={Path(result.log_path).parent}" in log
    assert result.status == "invalid" and "no summary" in result.error
