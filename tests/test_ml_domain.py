"""MLTrainingDomain without training: options, knobs, validation, data, outcome parsing, no torch at import."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerlab.core.errors import ConfigError, InvalidCandidate
from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import Domain
from ledgerlab.core.sandbox import SandboxResult
from ledgerlab.domains.ml_training import data
from ledgerlab.domains.ml_training.domain import MLTrainingDomain, interpret, parse_summary


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
    assert MLTrainingDomain(device="cpu", budget_tokens=20000, grace=1, startup_s=0).timeout_for() == 10


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


def _signed(body: str, nonce: str) -> str:
    return body + "signature: " + hmac.new(nonce.encode(), body.encode(), hashlib.sha256).hexdigest() + "\n"


def _outcome(tmp_path: Path, log: str, code: int | None = 0, timed_out: bool = False) -> SandboxResult:
    (tmp_path / "run.log").write_text(log)
    return SandboxResult(exit_code=code, timed_out=timed_out, cancelled=False, duration_s=1.0,
                         log_path=tmp_path / "run.log", log_tail=log[-4000:])


def test_outcomes_from_logs(tmp_path: Path) -> None:
    body = "val_bpb: 3.25\nsteps: 10\ndevice: cpu\n"
    good = "step 1\n---\n" + _signed(body, "n1")
    summary, signed = parse_summary(good, "n1")
    assert signed and summary == {"val_bpb": 3.25, "steps": 10, "device": "cpu"}
    assert interpret(_outcome(tmp_path, good), "n1", True, 9).status == "finished"
    assert interpret(_outcome(tmp_path, good), "other", True, 9).status == "invalid"  # forged signature
    assert interpret(_outcome(tmp_path, good), "n1", False, 9).status == "invalid"  # harness changed
    assert interpret(_outcome(tmp_path, "done\n"), "n1", True, 9).status == "invalid"  # no summary
    assert interpret(_outcome(tmp_path, "x", None, True), "n1", True, 9).status == "timeout"
    crashed = interpret(_outcome(tmp_path, "Traceback\nValueError: boom\n", 1), "n1", True, 9)
    assert crashed.status == "crashed" and "ValueError: boom" in crashed.error
    oom = interpret(_outcome(tmp_path, "RuntimeError: DefaultCPUAllocator: can't allocate memory\n", 1), "n1", True, 9)
    assert oom.status == "crashed" and oom.error.startswith("out of memory")
    nan = interpret(_outcome(tmp_path, "harness: diverged: non-finite training loss nan at step 3\n", 3), "n1", True, 9)
    assert nan.status == "diverged" and "step 3" in nan.error


def test_memory_margin_declares_a_memory_guardrail_over_the_runs_peak_memory(tmp_path: Path) -> None:
    from ledgerlab.core.guardrails import check

    assert MLTrainingDomain(device="cpu").guardrails == ()  # off unless asked for
    (guard,) = MLTrainingDomain(device="cpu", memory_margin=0.2).guardrails
    assert (guard.name, guard.direction, guard.margin) == ("peak_memory_mb", "minimize", 0.2)
    for bad in (1.5, -0.1, "much", True):
        with pytest.raises(ConfigError, match="memory_margin"):
            MLTrainingDomain(device="cpu", memory_margin=bad)
    # A finished run reports the sums the guardrail pools; one run is checked against the incumbent's runs.
    def finished(memory: float) -> dict:
        body = f"val_bpb: 3.25\npeak_memory_mb: {memory}\n"
        run = interpret(_outcome(tmp_path, "---\n" + _signed(body, "n1")), "n1", True, 9)
        assert run.status == "finished"
        return run.metrics
    assert finished(600.0)["runs"] == 1 and finished(600.0)["peak_memory_mb_sq"] == 360_000.0
    incumbent = [({}, finished(m)) for m in (600.0, 604.0, 598.0)]
    assert check(guard, [(finished(900.0), {}), *incumbent]).harmed  # type: ignore[union-attr]
    assert not check(guard, [(finished(650.0), {}), *incumbent]).harmed  # type: ignore[union-attr]
