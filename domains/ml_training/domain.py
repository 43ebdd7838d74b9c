"""The ml_training domain: train a small byte-level GPT for a fixed budget; the metric is val_bpb (lower wins).

    from ledgerlab.domains.ml_training.domain import MLTrainingDomain
    domain = MLTrainingDomain(budget_s=30)          # every option is optional; see OPTIONS
    result = domain.run(RunRequest(run_id="r1", candidate_id="c", files=domain.baseline(), seed=0,
                                   workdir=Path(".ledgerlab/runs/r1")))

A run has two sandboxes (core/sandbox.py). The first holds the candidate's train.py, the fixed harness.py and
the training split only; it trains and exports the model with torch.export. The second runs the trusted
evaluator.py on that exported program (data, not code) and the validation split, which the first never had
in view; the value recorded is the evaluator's. Peak memory and wall time come from this process (the run's
cgroup, or polling), never from the run's own report. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ledgerlab.core.domain_base import DomainBase
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.outcomes import traceback_tail
from ledgerlab.core.protocols import Files, Guardrail, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.core.sandbox import Limits, Sandbox, SandboxResult, read_tail, resolve_isolation
from ledgerlab.domains.ml_training.checks import ARTIFACT, validate_files
from ledgerlab.domains.ml_training.data import Dataset, resolve_dataset
from ledgerlab.domains.ml_training.knobs import KNOBS
from ledgerlab.domains.ml_training.splits import Splits, prepare_splits
from ledgerlab.errors import ConfigError, InvalidCandidate, IsolationUnavailable

HERE = Path(__file__).parent
HARNESS = HERE / "harness.py"
EVALUATOR = HERE / "evaluator.py"
MODEL = "model.pt2"
RESULT = "result.json"
TEMPLATE = HERE / "template" / ARTIFACT
PROGRAM = HERE / "program.md"
OOM_PATTERNS = ("out of memory", "MemoryError", "can't allocate memory", "std::bad_alloc", "Cannot allocate memory")


# ------------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """Defaults for a kind of device. The CPU numbers are measured (README.md); the GPU ones are a start."""

    budget_s: float
    # A token budget by default: the same run trains the same steps on a quiet or a busy machine, so load
    # changes the wall time, not val_bpb (a 30 s budget gave 36-300 steps on a shared 2-core machine).
    budget_tokens: int | None
    eval_tokens: int
    memory_limit_mb: int | None
    startup_s: float  # allowance for imports, data loading and evaluation, on top of budget × grace
    delta: float  # practical margin of val_bpb
    min_tokens_per_s: float  # to turn a token budget into a timeout
    eval_timeout_s: float  # the evaluator's own time limit
    # CPU threads per run unless the `threads` option says otherwise (None: the executor's share of the
    # cores). One on CPU: with the cores shared, a second OpenMP thread waits for a busy core and a run
    # trained 2-6x slower than with one (measured: 1.8 k vs 11 k tokens/s under load).
    threads: int | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)


# CPU: 24 steps of 2 048 tokens, about 5 s of training on one core; each run's fixed cost (two torch
# imports, export, evaluator) is larger than that, so the demo's 8 hypotheses fit in minutes.
CPU = Profile(budget_s=30.0, budget_tokens=49152, eval_tokens=32768, memory_limit_mb=8192, startup_s=45.0,
              delta=0.02, min_tokens_per_s=1000.0, eval_timeout_s=120.0, threads=1)
GPU = Profile(budget_s=300.0, budget_tokens=None, eval_tokens=2**20, memory_limit_mb=None, startup_s=120.0,
              delta=0.002, min_tokens_per_s=50000.0, eval_timeout_s=600.0,
              train_overrides={"DEPTH": 8, "WIDTH": 512, "HEADS": 8, "SEQ_LEN": 512, "BATCH_SIZE": 64,
                               "LR": 1e-3, "EMBED_LR": 3e-3})
OPTIONS = ("budget_s", "budget_tokens", "dataset", "device", "grace", "memory_limit_mb", "eval_tokens",
           "startup_s", "threads", "memory_margin", "disk_limit_mb", "pids_limit")
MEMORY = "peak_memory_mb"  # a run's peak memory (measured by the parent), the optional guardrail's metric


def detect_device() -> str:
    """'cuda', 'mps' or 'cpu', without importing torch here (a child process asks torch when it might help)."""
    maybe_cuda = Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None
    if not maybe_cuda and sys.platform != "darwin":
        return "cpu"
    probe = ("import torch; print('cuda' if torch.cuda.is_available() else 'mps' if "
             "torch.backends.mps.is_available() else 'cpu')")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        return out.stdout.strip() or "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def memory_guardrails(margin: float | None) -> tuple[Guardrail, ...]:
    """With a margin (e.g. 0.2): a change may not raise peak memory by more than that share; None: no check."""
    if margin is None:
        return ()
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ConfigError(f"ml_training: memory_margin must be a share in [0, 1), e.g. 0.2, not {margin!r}")
    return (Guardrail(name=MEMORY, direction="minimize", n_key="runs", sum_key=MEMORY, sumsq_key=f"{MEMORY}_sq",
                      margin=float(margin), unit="MB"),)


def with_sums(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's summary plus the per-run sums a guardrail pools (runs = 1, the value, its square)."""
    value = summary.get(MEMORY)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {**summary, "runs": 1, f"{MEMORY}_sq": float(value) ** 2}
    return summary


# ------------------------------------------------------------------------------------------- the domain


class MLTrainingDomain(DomainBase):
    """The Domain for train.py + harness.py."""

    name = "ml_training"
    design: Literal["independent", "concurrent"] = "independent"

    def __init__(self, budget_s: float | None = None, budget_tokens: int | None = None,
                 dataset: str | None = None, device: str = "auto", grace: float = 1.5,
                 memory_limit_mb: int | None | Literal["auto"] = "auto", eval_tokens: int | None = None,
                 startup_s: float | None = None, threads: int | None = None,
                 memory_margin: float | None = None, disk_limit_mb: int = 2048, pids_limit: int = 512,
                 **unknown: Any) -> None:
        if unknown:
            raise ConfigError(f"ml_training: unknown option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
        self.device = detect_device() if device == "auto" else str(device)
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"ml_training: device must be auto, cpu, mps, cuda or cuda:N, not {device!r}")
        self.profile = CPU if self.device == "cpu" else GPU
        self.budget_s = float(budget_s if budget_s is not None else self.profile.budget_s)
        self.budget_tokens = self._token_budget(budget_s, budget_tokens)
        self.eval_tokens = int(eval_tokens or self.profile.eval_tokens)
        self.grace = float(grace)
        self.memory_limit_mb = self.profile.memory_limit_mb if memory_limit_mb == "auto" else memory_limit_mb
        self.startup_s = float(startup_s if startup_s is not None else self.profile.startup_s)
        self.threads = threads if threads is not None else self.profile.threads
        if self.budget_s <= 0 or self.grace < 1 or self.eval_tokens < 16 or (budget_tokens or 0) < 0:
            raise ConfigError("ml_training: need budget_s > 0, grace >= 1, eval_tokens >= 16, budget_tokens >= 0")
        self.guardrails = memory_guardrails(memory_margin)
        self.disk_limit_mb, self.pids_limit = int(disk_limit_mb), int(pids_limit)
        if self.disk_limit_mb < 16 or self.pids_limit < 16:
            raise ConfigError("ml_training: need disk_limit_mb >= 16 and pids_limit >= 16")
        self.dataset: Dataset = resolve_dataset(dataset)
        self._splits: Splits | None = None
        self.metric = MetricSpec(name="val_bpb", direction="minimize", kind="continuous",
                                 delta=self.profile.delta, unit="bits/byte")
        self.description = PROGRAM.read_text()
        self._harness_sha = hashlib.sha256(HARNESS.read_bytes() + EVALUATOR.read_bytes()).hexdigest()
        self._cancel = threading.Event()

    def _token_budget(self, budget_s: float | None, budget_tokens: int | None) -> int | None:
        """Tokens when given (0: off, train for budget_s); seconds when only budget_s is; else the profile's."""
        if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, (int, float, type(None))):
            raise ConfigError(f"ml_training: budget_tokens must be a number of tokens, not {budget_tokens!r}")
        if budget_tokens is not None:
            return int(budget_tokens) or None
        return None if budget_s is not None else self.profile.budget_tokens

    # -- the artifact ----------------------------------------------------------------------------

    def baseline(self) -> dict[str, str]:
        files = {ARTIFACT: TEMPLATE.read_text()}
        knobs = {k.name: k for k in KNOBS}
        for name, value in self.profile.train_overrides.items():
            files = write_knob(files, knobs[name], value)
        return files

    def knobs(self) -> tuple[Knob, ...]:
        return KNOBS

    def validate(self, files: Files) -> None:
        validate_files(files)

    def environment(self) -> dict[str, Any]:
        try:
            torch_version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            torch_version = "not installed"
        return {"torch": torch_version, "python": sys.version.split()[0], "device": self.device,
                "dataset": self.dataset.name, "data_checksum": self.dataset.sha256,
                "harness_checksum": self._harness_sha, "budget_s": self.budget_s,
                "budget_tokens": self.budget_tokens, "eval_tokens": self.eval_tokens}

    def timeout_for(self, request: RunRequest | None = None) -> float:
        """Seconds after which a run is killed: budget × grace + the startup allowance (or the request's)."""
        if request is not None and request.timeout_s is not None:
            return float(request.timeout_s)
        train_s = self.budget_tokens / self.profile.min_tokens_per_s if self.budget_tokens else self.budget_s
        return train_s * self.grace + self.startup_s

    # -- running ---------------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunResult:
        """Run one replicate; every failure comes back as a RunResult, never as an exception."""
        try:
            self.validate(request.files)
        except InvalidCandidate as exc:
            return RunResult(status="invalid", error=str(exc))
        try:
            return self._run(request)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk while writing the working copy
            # The traceback's tail, as the executor keeps for a domain that raises (executors/local.safe_run).
            return RunResult(status="crashed", error=f"the runner failed: {type(exc).__name__}: {exc}",
                             log_tail=traceback_tail(exc))

    def splits(self) -> Splits:
        """The dataset's training and validation files (prepared once, in the cache)."""
        if self._splits is None:
            self._splits = prepare_splits(self.dataset)
        return self._splits

    def _run(self, request: RunRequest) -> RunResult:
        try:
            isolation = resolve_isolation(request.isolation)
        except IsolationUnavailable as exc:
            return RunResult(status="crashed", error=f"not run: {exc}")
        workdir = Path(request.workdir)
        shutil.rmtree(workdir, ignore_errors=True)  # a retry starts from a clean working copy
        eval_dir = workdir.with_name(workdir.name + ".eval")
        shutil.rmtree(eval_dir, ignore_errors=True)
        for log in (log_path(workdir), log_path(eval_dir)):  # a retry's logs hold only its own attempt
            log.unlink(missing_ok=True)
        # The executor's GPU assignment applies only to a CUDA device; an explicit cpu/mps/cuda:N choice wins.
        device = request.device if request.device and self.device == "cuda" else self.device
        threads = self.threads or request.threads
        limits = Limits(memory_mb=self.memory_limit_mb if device == "cpu" else None, pids=self.pids_limit,
                        disk_mb=self.disk_limit_mb)
        box = Sandbox(workdir, isolation=isolation, inputs={ARTIFACT: request.files[ARTIFACT], HARNESS.name: HARNESS},
                      data={"train.bin": self.splits().train}, outputs=(MODEL,), limits=limits, device=device,
                      threads=threads)
        try:
            timeout = self.timeout_for(request)
            env = {**self._child_env(request, device, threads), "LEDGERLAB_DATA": box.data_path("train.bin"),
                   "LEDGERLAB_MODEL_OUT": f"{box.work}/{MODEL}"}
            trained = box.run([sys.executable, ARTIFACT], log_path=log_path(workdir), timeout_s=timeout, env=env,
                              cancel=self._cancel)
            result = interpret(trained, timeout)
            if result.status != "finished":
                return result
            evaluated = self._evaluate(box.output_path(MODEL), eval_dir, isolation, device, threads, limits)
            return with_evaluation(result, trained, evaluated, eval_dir / RESULT)
        finally:
            if not request.keep_workdir:
                box.remove()
                shutil.rmtree(eval_dir, ignore_errors=True)

    def _evaluate(self, model: Path, eval_dir: Path, isolation: Any, device: str, threads: int | None,
                  limits: Limits) -> SandboxResult:
        """Run the trusted evaluator on the exported `model` and the validation split, in its own sandbox."""
        box = Sandbox(eval_dir, isolation=isolation, inputs={EVALUATOR.name: EVALUATOR},
                      data={"val.bin": self.splits().val, MODEL: model}, outputs=(RESULT,), limits=limits,
                      device=device, threads=threads)
        env = {"LEDGERLAB_MODEL": box.data_path(MODEL), "LEDGERLAB_VAL": box.data_path("val.bin"),
               "LEDGERLAB_EVAL_TOKENS": str(self.eval_tokens), "LEDGERLAB_RESULT": f"{box.work}/{RESULT}",
               "LEDGERLAB_DEVICE": "cuda" if device.startswith("cuda") else device,
               "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
        if threads:
            env["LEDGERLAB_THREADS"] = str(threads)
        return box.run([sys.executable, EVALUATOR.name], log_path=log_path(eval_dir),
                       timeout_s=self.profile.eval_timeout_s, env=env, cancel=self._cancel)

    def _child_env(self, request: RunRequest, device: str, threads: int | None) -> dict[str, str]:
        env = {"LEDGERLAB_SEED": str(request.seed), "LEDGERLAB_BUDGET_S": repr(self.budget_s),
               "LEDGERLAB_DEVICE": "cuda" if device.startswith("cuda") else device}
        if self.budget_tokens:
            env["LEDGERLAB_BUDGET_TOKENS"] = str(self.budget_tokens)
        if threads:
            env["LEDGERLAB_THREADS"] = str(threads)
        return env

    def cancel_all(self) -> None:
        """Kill the runs in flight (the executor calls this at shutdown)."""
        self._cancel.set()

    def close(self) -> None:
        self.cancel_all()


# ------------------------------------------------------------------------------------------- outcomes


def log_path(workdir: Path) -> Path:
    """A run's log: beside its working copy, so it outlives the copy's removal."""
    return workdir.with_name(workdir.name + ".log")


def interpret(outcome: SandboxResult, timeout_s: float) -> RunResult:
    """Map how the training sandbox ended to a RunResult; "finished" here means "ready to evaluate"."""
    log = read_tail(outcome.log_path, 64_000)
    base = RunResult(status="crashed", log_tail=outcome.log_tail, duration_s=round(outcome.duration_s, 3),
                     log_path=str(outcome.log_path))
    if outcome.cancelled:
        return replace_result(base, error="cancelled: the campaign stopped while the run was in flight")
    if outcome.timed_out:
        return replace_result(base, status="timeout", error=f"killed after {timeout_s:.0f} s "
                                                            "(budget × grace + startup allowance)")
    for kind in ("diverged", "invalid"):
        match = re.search(rf"^harness: {kind}: (.*)$", log, re.M)
        if match and outcome.exit_code in (3, 4):
            return replace_result(base, status=kind, error=match.group(1).strip())
    if outcome.limit_hit == "memory" or (outcome.exit_code == -9 and not outcome.limit_hit) \
            or (outcome.exit_code != 0 and any(p in log for p in OOM_PATTERNS)):
        return replace_result(base, error=f"out of memory: {_last_error_line(log)}")
    if outcome.limit_hit in ("disk", "pids"):
        what = "wrote more than its disk limit" if outcome.limit_hit == "disk" else "hit its process limit"
        return replace_result(base, error=f"the run {what}: {_last_error_line(log)}")
    if outcome.exit_code != 0:
        return replace_result(base, error=f"exit code {outcome.exit_code}: {_last_error_line(log)}")
    return replace_result(base, status="finished", metrics=parse_reported(log))


def with_evaluation(trained: RunResult, train_outcome: SandboxResult, evaluated: SandboxResult,
                    result_file: Path) -> RunResult:
    """The run's result once the evaluator has scored its model: the evaluator's value, the parent's measures."""
    log_tail = (trained.log_tail + "\n--- evaluator ---\n" + evaluated.log_tail)[-4000:]
    base = replace_result(trained, status="crashed", log_tail=log_tail,
                          duration_s=round(train_outcome.duration_s + evaluated.duration_s, 3))
    if evaluated.cancelled:
        return replace_result(base, error="cancelled: the campaign stopped while the model was evaluated")
    if evaluated.timed_out:
        return replace_result(base, status="timeout", error="the evaluator ran past its time limit on this model")
    try:
        verdict = json.loads(result_file.read_text())
    except (OSError, ValueError):
        verdict = None
    if not isinstance(verdict, dict) or evaluated.exit_code != 0:
        return replace_result(base, error=f"the evaluator failed (exit {evaluated.exit_code}): "
                                          f"{_last_error_line(read_tail(evaluated.log_path, 8000))}")
    if verdict.get("status") != "finished":
        status = "diverged" if verdict.get("status") == "diverged" else "invalid"
        return replace_result(base, status=status, error=str(verdict.get("reason", "rejected by the evaluator")))
    metrics = {**trained.metrics, "val_bpb": float(verdict["val_bpb"]), "num_params": verdict.get("num_params"),
               "eval_tokens": verdict.get("eval_tokens"), "seq_len": verdict.get("seq_len"),
               "eval_seconds": round(evaluated.duration_s, 3),
               "wall_seconds": round(train_outcome.duration_s, 3), "isolation": train_outcome.isolation}
    if train_outcome.peak_memory_mb is not None:
        metrics[MEMORY] = round(train_outcome.peak_memory_mb, 1)
    return replace_result(base, status="finished", value=float(verdict["val_bpb"]), metrics=with_sums(metrics))


def replace_result(result: RunResult, **changes: Any) -> RunResult:
    return result.model_copy(update=changes)


def parse_reported(log: str) -> dict[str, Any]:
    """The `reported_*` lines of the last block after a '---' line (what the run says of itself; untrusted)."""
    text = "\n" + log
    start = text.rfind("\n---\n")
    if start < 0:
        return {}
    reported: dict[str, Any] = {}
    for line in text[start + 5:].splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            break
        if key.startswith("reported_"):
            reported[key] = _number(value.strip())
    return reported


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^\w*(Error|Exception|Interrupt)\b|^RuntimeError", line)]
    return (errors or lines or ["(empty log)"])[-1][:500]
