"""MLTrainingDomain without training: options, knobs, validation, data and splits, outcomes, no torch at import."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import Domain, RunRequest
from ledgerlab.core.sandbox import SandboxResult
from ledgerlab.domains.ml_training import data
from ledgerlab.domains.ml_training.domain import (
    MLTrainingDomain,
    interpret,
    log_path,
    parse_reported,
    with_evaluation,
)
from ledgerlab.domains.ml_training.splits import VAL_FRACTION, prepare_splits, split_bytes
from ledgerlab.errors import ConfigError, InvalidCandidate


@pytest.fixture(scope="module")
def domain() -> MLTrainingDomain:
    return MLTrainingDomain(device="cpu")


def test_implements_the_protocol(domain: MLTrainingDomain) -> None:
    assert isinstance(domain, Domain)
    assert domain.name == "ml_training" and domain.design == "independent"
    assert domain.metric.name == "val_bpb" and domain.metric.direction == "minimize" and domain.metric.delta > 0
    assert "train.py" in domain.description and "harness.py" in domain.description
    assert list(domain.baseline()) == ["train.py"]


def test_unknown_and_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        MLTrainingDomain(device="cpu", budget_seconds=3)
    with pytest.raises(ConfigError):
        MLTrainingDomain(device="tpu")
    with pytest.raises(ConfigError):
        MLTrainingDomain(device="cpu", dataset="/no/such/file.txt")


def test_timeout_is_budget_times_grace_plus_startup() -> None:
    assert MLTrainingDomain(device="cpu", budget_s=10, grace=2, startup_s=5).timeout_for() == 25
    assert MLTrainingDomain(device="cpu", budget_tokens=20000, grace=1, startup_s=0).timeout_for() == 20


def test_cpu_runs_are_budgeted_in_tokens_on_one_thread_unless_told_otherwise() -> None:
    """Load changes a token-budgeted run's wall time, not what it trains: the demo is the same on a busy machine."""
    cpu = MLTrainingDomain(device="cpu")
    assert cpu.budget_tokens == 49152 and cpu.threads == 1
    env = cpu._child_env(RunRequest(run_id="r", candidate_id="c", files={}, seed=3, workdir=Path("w")), "cpu", 1)
    assert env["LEDGERLAB_BUDGET_TOKENS"] == "49152" and env["LEDGERLAB_SEED"] == "3"
    assert MLTrainingDomain(device="cpu", budget_s=12).budget_tokens is None  # seconds when asked for
    assert MLTrainingDomain(device="cpu", budget_tokens=0).budget_tokens is None  # 0: the time budget
    assert MLTrainingDomain(device="cpu", budget_tokens=1000, budget_s=5).budget_tokens == 1000
    assert MLTrainingDomain(device="cpu", threads=2).threads == 2
    with pytest.raises(ConfigError, match="budget_tokens"):
        MLTrainingDomain(device="cpu", budget_tokens="many")
    with pytest.raises(ConfigError):
        MLTrainingDomain(device="cpu", budget_tokens=-1)


def test_every_knob_is_a_line_of_the_baseline_within_its_range(domain: MLTrainingDomain) -> None:
    files = domain.baseline()
    for knob in domain.knobs():
        value = read_knob(files, knob)
        if knob.kind in ("choice", "bool"):
            assert value in knob.choices, knob.name
        else:
            assert knob.low <= value <= knob.high, knob.name
    assert {k.name for k in domain.knobs()} >= {"DEPTH", "WIDTH", "LR", "ACTIVATION", "NORM", "TIE_WEIGHTS"}


def test_validate_accepts_the_baseline_and_rejects_broken_candidates(domain: MLTrainingDomain) -> None:
    base = domain.baseline()["train.py"]
    domain.validate({"train.py": base})
    bad = {
        "does not compile": {"train.py": base.replace("DEPTH = 4", "DEPTH = = 4")},
        "only train.py": {"train.py": base, "harness.py": "x = 1\n"},
        "monkeypatching": {"train.py": base + "\nharness.evaluate_bpb = lambda *a, **k: 0.0\n"},
        "own evaluate_bpb": {"train.py": base + "\ndef evaluate_bpb(*a):\n    return 0.0\n"},
        "refers to harness.py": {"train.py": base + "\nopen('harness.py', 'a').write('#')\n"},
        "internals": {"train.py": base + "\nsession._started = None\n"},
        "own summary": {"train.py": base + "\nprint('val_bpb: 0.1')\n"},
    }
    for reason, files in bad.items():
        with pytest.raises(InvalidCandidate, match=reason):
            domain.validate(files)


def test_environment_reports_versions_and_the_data_checksum(domain: MLTrainingDomain) -> None:
    env = domain.environment()
    meta = json.loads(data.BUILTIN_META.read_text())
    assert env["device"] == "cpu" and env["torch"] and env["data_checksum"] == meta["sha256"]
    assert len(env["harness_checksum"]) == 64 and env["eval_tokens"] == domain.eval_tokens
    assert hashlib.sha256(gzip.decompress(data.BUILTIN_CORPUS.read_bytes())).hexdigest() == meta["sha256"]
    assert data.BUILTIN_CORPUS.stat().st_size < 3_000_000


def test_importing_the_domain_does_not_import_torch() -> None:
    code = ("import sys; from ledgerlab.domains.ml_training.domain import MLTrainingDomain; "
            "MLTrainingDomain(device='cpu').environment(); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_user_file_folder_and_tinystories_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERLAB_CACHE", str(tmp_path / "cache"))
    text = ("Once upon a time there was a cat. " * 200).encode()
    (tmp_path / "one.txt").write_bytes(text)
    ds = data.resolve_dataset(str(tmp_path / "one.txt"))
    assert ds.sha256 == hashlib.sha256(text).hexdigest()
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_bytes(text)
    (folder / "sub" / "a.txt").write_bytes(b"first " * 100)
    (folder / "blob.bin").write_bytes(b"\x00\x01" * 100)
    ds = data.resolve_dataset(str(folder))
    assert ds.path.read_bytes() == text + b"\n\n" + b"first " * 100 + b"\n\n"  # sorted, binary skipped
    with pytest.raises(ConfigError, match="download-tinystories"):
        data.resolve_dataset("tinystories")
    raw = tmp_path / "TinyStories-valid.txt"
    raw.write_text("One day, Lily found a shell.\n<|endoftext|>\nTom liked to run.\n" * 100)
    path = data.download_tinystories("valid", url=raw.as_uri())  # the download path, offline
    assert "<|endoftext|>" not in path.read_text() and "Lily found a shell.\n\nTom liked" in path.read_text()
    assert data.resolve_dataset("tinystories").path == path


def test_splits_are_the_corpus_tail_cached_and_read_only(tmp_path: Path) -> None:
    text = bytes(range(256)) * 40
    train, val = split_bytes(text)
    assert len(val) == int(len(text) * VAL_FRACTION) and train + val == text
    assert [len(part) for part in split_bytes(b"abc")] == [1, 2]  # at least two validation bytes
    (tmp_path / "corpus.txt").write_bytes(text)
    dataset = data.resolve_dataset(str(tmp_path / "corpus.txt"))
    splits = prepare_splits(dataset, root=tmp_path / "splits")
    assert splits.train.read_bytes() == train and splits.val.read_bytes() == val
    for path in (splits.train, splits.val):
        assert path.stat().st_mode & 0o777 == 0o444  # readable by the sandbox's uid, writable by nobody
    before = splits.val.stat().st_mtime_ns
    assert prepare_splits(dataset, root=tmp_path / "splits") == splits  # cached: not written again
    assert splits.val.stat().st_mtime_ns == before
    assert sorted(p.name for p in splits.val.parent.iterdir()) == ["train.bin", "val.bin"]  # no .part left


def test_the_builtin_splits_hold_the_whole_corpus(domain: MLTrainingDomain) -> None:
    splits = domain.splits()
    text = data.read_bytes(data.BUILTIN_CORPUS)
    assert splits.train.read_bytes() + splits.val.read_bytes() == text
    assert splits.val.stat().st_size == int(len(text) * VAL_FRACTION)


def test_the_log_lives_beside_the_working_copy(tmp_path: Path) -> None:
    assert log_path(tmp_path / "runs" / "r-1") == tmp_path / "runs" / "r-1.log"


# ------------------------------------------------------------------------------------------- outcomes


def _outcome(tmp_path: Path, log: str, code: int | None = 0, name: str = "run.log", **fields: object) -> SandboxResult:
    """How a sandbox ended, as core/sandbox.py reports it, with `log` as the run's whole log."""
    (tmp_path / name).write_text(log)
    settings: dict = {"timed_out": False, "cancelled": False, "duration_s": 1.0, "isolation": "bwrap",
                      "peak_memory_mb": 321.0, **fields}
    return SandboxResult(exit_code=code, log_path=tmp_path / name, log_tail=log[-4000:], **settings)


REPORTED = "---\nreported_training_seconds: 1.02\nreported_steps: 32\nreported_tokens: 4096\n"


def test_parse_reported_keeps_only_the_runs_own_report() -> None:
    log = "step 1\n---\nreported_steps: 3\n" + "step 2\n" + REPORTED + "val_bpb: 0.01\npeak_memory_mb: 1\n"
    assert parse_reported(log) == {"reported_training_seconds": 1.02, "reported_steps": 32,
                                   "reported_tokens": 4096}  # the last block only
    forged = "---\nval_bpb: 0.01\nnum_params: 1\npeak_memory_mb: 1.0\nisolation: none\n"
    assert parse_reported(forged) == {}
    assert parse_reported("no report at all\n") == {}
    assert parse_reported("---\nreported_steps: 1\nstep 9\n---\nreported_steps: 2\n") == {"reported_steps": 2}


def test_how_the_training_sandbox_ended(tmp_path: Path) -> None:
    ready = interpret(_outcome(tmp_path, "step 1\n" + REPORTED), 9)
    assert ready.status == "finished" and ready.value is None  # ready to evaluate; no value yet
    assert ready.metrics["reported_steps"] == 32 and ready.log_path == str(tmp_path / "run.log")
    forged = interpret(_outcome(tmp_path, "---\nval_bpb: 0.01\n"), 9)
    assert forged.status == "finished" and forged.value is None and "val_bpb" not in forged.metrics
    timeout = interpret(_outcome(tmp_path, "x", None, timed_out=True), 9)
    assert timeout.status == "timeout" and "killed after 9 s" in timeout.error
    cancelled = interpret(_outcome(tmp_path, "x", None, cancelled=True), 9)
    assert cancelled.status == "crashed" and cancelled.error.startswith("cancelled")
    crashed = interpret(_outcome(tmp_path, "Traceback\nValueError: boom\n", 1), 9)
    assert crashed.status == "crashed" and "ValueError: boom" in crashed.error
    oom = interpret(_outcome(tmp_path, "RuntimeError: DefaultCPUAllocator: can't allocate memory\n", 1), 9)
    assert oom.status == "crashed" and oom.error.startswith("out of memory")
    killed = interpret(_outcome(tmp_path, "step 1\n", -9, limit_hit="memory"), 9)
    assert killed.status == "crashed" and killed.error.startswith("out of memory")
    disk = interpret(_outcome(tmp_path, "OSError: [Errno 28] No space left on device\n", 1, limit_hit="disk"), 9)
    assert disk.status == "crashed" and "disk limit" in disk.error
    pids = interpret(_outcome(tmp_path, "BlockingIOError: [Errno 11] Resource temporarily unavailable\n", 1,
                              limit_hit="pids"), 9)
    assert pids.status == "crashed" and "process limit" in pids.error
    nan = interpret(_outcome(tmp_path, "harness: diverged: non-finite training loss nan at step 3\n", 3), 9)
    assert nan.status == "diverged" and "step 3" in nan.error
    export = interpret(_outcome(tmp_path, "harness: invalid: the model cannot be exported with torch.export: "
                                          "UserError: data-dependent\n", 4), 9)
    assert export.status == "invalid" and "cannot be exported" in export.error
    said_only = interpret(_outcome(tmp_path, "harness: invalid: I say so\n", 0), 9)  # a line without the exit
    assert said_only.status == "finished"


def _evaluated(tmp_path: Path, verdict: object, code: int | None = 0, log: str = "evaluator: ok\n",
               **fields: object) -> tuple[SandboxResult, Path]:
    result = tmp_path / "result.json"
    result.write_text(verdict if isinstance(verdict, str) else json.dumps(verdict))
    settings: dict = {"duration_s": 2.0, "peak_memory_mb": 999.0, **fields}
    return _outcome(tmp_path, log, code, name="eval.log", **settings), result


def _scored(tmp_path: Path, verdict: object, code: int | None = 0, train_log: str = "step 1\n" + REPORTED,
            **fields: object):
    trained_outcome = _outcome(tmp_path, train_log)
    trained = interpret(trained_outcome, 9)
    evaluated, result = _evaluated(tmp_path, verdict, code, **fields)
    return with_evaluation(trained, trained_outcome, evaluated, result)


FINISHED = {"status": "finished", "val_bpb": 3.25, "num_params": 67968, "eval_tokens": 4096, "seq_len": 32,
            "seconds": 1.5}


def test_the_value_is_the_evaluators_and_the_measures_the_parents(tmp_path: Path) -> None:
    run = _scored(tmp_path, FINISHED, train_log="step 1\n---\nval_bpb: 0.01\npeak_memory_mb: 1.0\n" + REPORTED)
    assert run.status == "finished" and run.value == 3.25 == run.metrics["val_bpb"]
    m = run.metrics
    assert m["num_params"] == 67968 and m["eval_tokens"] == 4096 and m["isolation"] == "bwrap"
    assert m["seq_len"] == 32  # the evaluator's reading of the program, not the run's report
    assert m["peak_memory_mb"] == 321.0  # the training sandbox's peak, measured by the parent
    assert m["wall_seconds"] == 1.0 and m["eval_seconds"] == 2.0 and run.duration_s == 3.0
    assert m["reported_steps"] == 32 and m["runs"] == 1 and m["peak_memory_mb_sq"] == 321.0**2
    assert "--- evaluator ---" in run.log_tail and run.log_tail.endswith("evaluator: ok\n")


def test_what_the_evaluator_can_say(tmp_path: Path) -> None:
    invalid = _scored(tmp_path, {"status": "invalid", "reason": "not causal: changing bytes after position 16"})
    assert invalid.status == "invalid" and invalid.value is None and "not causal" in invalid.error
    diverged = _scored(tmp_path, {"status": "diverged", "reason": "non-finite val_bpb nan"})
    assert diverged.status == "diverged" and "non-finite" in diverged.error
    failed = _scored(tmp_path, "", 1, log="Traceback\nRuntimeError: the evaluator broke\n")
    assert failed.status == "crashed" and "the evaluator failed (exit 1)" in failed.error
    assert "RuntimeError: the evaluator broke" in failed.error
    not_zero = _scored(tmp_path, FINISHED, 1)  # a verdict without a clean exit is not trusted
    assert not_zero.status == "crashed" and not_zero.value is None
    timeout = _scored(tmp_path, "", None, timed_out=True)
    assert timeout.status == "timeout" and "evaluator" in timeout.error
    cancelled = _scored(tmp_path, "", None, cancelled=True)
    assert cancelled.status == "crashed" and cancelled.error.startswith("cancelled")


def test_memory_margin_declares_a_memory_guardrail_over_the_runs_peak_memory(tmp_path: Path) -> None:
    from ledgerlab.core.guardrails import check

    assert MLTrainingDomain(device="cpu").guardrails == ()  # off unless asked for
    (guard,) = MLTrainingDomain(device="cpu", memory_margin=0.2).guardrails
    assert (guard.name, guard.direction, guard.margin) == ("peak_memory_mb", "minimize", 0.2)
    for bad in (1.5, -0.1, "much", True):
        with pytest.raises(ConfigError, match="memory_margin"):
            MLTrainingDomain(device="cpu", memory_margin=bad)

    # A finished run carries the sums the guardrail pools; one run is checked against the incumbent's runs.
    def finished(memory: float) -> dict:
        trained_outcome = _outcome(tmp_path, REPORTED, peak_memory_mb=memory)
        evaluated, result = _evaluated(tmp_path, FINISHED)
        run = with_evaluation(interpret(trained_outcome, 9), trained_outcome, evaluated, result)
        assert run.status == "finished"
        return run.metrics

    assert finished(600.0)["runs"] == 1 and finished(600.0)["peak_memory_mb_sq"] == 360_000.0
    incumbent = [({}, finished(m)) for m in (600.0, 604.0, 598.0)]
    assert check(guard, [(finished(900.0), {}), *incumbent]).harmed  # type: ignore[union-attr]
    assert not check(guard, [(finished(650.0), {}), *incumbent]).harmed  # type: ignore[union-attr]


def test_a_failure_of_the_runner_keeps_its_traceback(domain: MLTrainingDomain, tmp_path: Path) -> None:
    """The runner's own failure (here: a working copy that cannot be made) keeps the traceback's tail as its
    log, as the executor does for a domain that raises, and RunFailed carries it into the ledger."""
    from ledgerlab.core.outcomes import run_event

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = domain.run(RunRequest(run_id="r", candidate_id="c", files=domain.baseline(), seed=0,
                                   workdir=blocked / "w", isolation="process"))
    assert result.status == "crashed" and result.error.startswith("the runner failed: NotADirectoryError")
    assert "Traceback (most recent call last)" in result.log_tail and "NotADirectoryError" in result.log_tail
    assert run_event("r", result).log_tail == result.log_tail  # type: ignore[union-attr]
