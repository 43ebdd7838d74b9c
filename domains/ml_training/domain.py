"""The ml_training domain: train a small byte-level GPT for a fixed budget; the metric is val_bpb (lower wins).

    from ledgerlab.domains.ml_training.domain import MLTrainingDomain
    domain = MLTrainingDomain(budget_s=30)          # every option is optional; see OPTIONS
    result = domain.run(RunRequest(run_id="r1", candidate_id="c", files=domain.baseline(), seed=0,
                                   workdir=Path(".ledgerlab/runs/r1")))

A run copies the candidate's train.py and the fixed harness.py into the run's working copy, starts
`python train.py` in the sandbox (core/sandbox.py) and reads the summary the harness printed and signed.
This module never imports torch: training happens in the child process.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import re
import secrets
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ledgerlab.core.errors import ConfigError, InvalidCandidate
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.protocols import Files, Guardrail, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.core.sandbox import SandboxResult, read_tail, run_sandboxed
from ledgerlab.domains.ml_training.checks import ARTIFACT, validate_files
from ledgerlab.domains.ml_training.data import Dataset, resolve_dataset
from ledgerlab.domains.ml_training.knobs import KNOBS

HERE = Path(__file__).parent
HARNESS = HERE / "harness.py"
TEMPLATE = HERE / "template" / ARTIFACT
PROGRAM = HERE / "program.md"
LOG_NAME = "run.log"
OOM_PATTERNS = ("out of memory", "MemoryError", "can't allocate memory", "std::bad_alloc", "Cannot allocate memory")


# ------------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """Defaults for a kind of device. The CPU numbers are measured (README.md); the GPU ones are a start."""

    budget_s: float
    eval_tokens: int
    memory_limit_mb: int | None
    startup_s: float  # allowance for imports, data loading and evaluation, on top of budget × grace
    delta: float  # practical margin of val_bpb
    min_tokens_per_s: float  # to turn a token budget into a timeout
    train_overrides: dict[str, Any] = field(default_factory=dict)


CPU = Profile(budget_s=30.0, eval_tokens=65536, memory_limit_mb=8192, startup_s=45.0, delta=0.02,
              min_tokens_per_s=2000.0)
GPU = Profile(budget_s=300.0, eval_tokens=2**20, memory_limit_mb=None, startup_s=120.0, delta=0.002,
              min_tokens_per_s=50000.0,
              train_overrides={"DEPTH": 8, "WIDTH": 512, "HEADS": 8, "SEQ_LEN": 512, "BATCH_SIZE": 64,
                               "LR": 1e-3, "EMBED_LR": 3e-3})
OPTIONS = ("budget_s", "budget_tokens", "dataset", "device", "grace", "memory_limit_mb", "eval_tokens",
           "startup_s", "threads", "memory_margin")
MEMORY = "peak_memory_mb"  # a run's peak memory (harness.py), the optional guardrail's metric


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


class MLTrainingDomain:
    """Implements the Domain protocol for train.py + harness.py."""

    name = "ml_training"
    design: Literal["independent", "concurrent"] = "independent"

    def __init__(self, budget_s: float | None = None, budget_tokens: int | None = None,
                 dataset: str | None = None, device: str = "auto", grace: float = 1.5,
                 memory_limit_mb: int | None | Literal["auto"] = "auto", eval_tokens: int | None = None,
                 startup_s: float | None = None, threads: int | None = None,
                 memory_margin: float | None = None, **unknown: Any) -> None:
        if unknown:
            raise ConfigError(f"ml_training: unknown option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
        self.device = detect_device() if device == "auto" else str(device)
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"ml_training: device must be auto, cpu, mps, cuda or cuda:N, not {device!r}")
        self.profile = CPU if self.device == "cpu" else GPU
        self.budget_s = float(budget_s if budget_s is not None else self.profile.budget_s)
        self.budget_tokens = int(budget_tokens) if budget_tokens else None
        self.eval_tokens = int(eval_tokens or self.profile.eval_tokens)
        self.grace = float(grace)
        self.memory_limit_mb = self.profile.memory_limit_mb if memory_limit_mb == "auto" else memory_limit_mb
        self.startup_s = float(startup_s if startup_s is not None else self.profile.startup_s)
        self.threads = threads
        if self.budget_s <= 0 or self.grace < 1 or self.eval_tokens < 16 or (budget_tokens or 0) < 0:
            raise ConfigError("ml_training: need budget_s > 0, grace >= 1, eval_tokens >= 16, budget_tokens >= 0")
        self.guardrails = memory_guardrails(memory_margin)
        self.dataset: Dataset = resolve_dataset(dataset)
        self.metric = MetricSpec(name="val_bpb", direction="minimize", kind="continuous",
                                 delta=self.profile.delta, unit="bits/byte")
        self.description = PROGRAM.read_text()
        self._harness_sha = hashlib.sha256(HARNESS.read_bytes()).hexdigest()
        self._cancel = threading.Event()

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
            return RunResult(status="crashed", error=f"the runner failed: {type(exc).__name__}: {exc}")

    def _run(self, request: RunRequest) -> RunResult:
        workdir = Path(request.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / ARTIFACT).write_text(request.files[ARTIFACT])
        harness_copy = workdir / HARNESS.name
        if harness_copy.exists():
            harness_copy.chmod(0o644)
        shutil.copyfile(HARNESS, harness_copy)
        harness_copy.chmod(0o444)
        nonce = secrets.token_hex(16)
        # The executor's GPU assignment applies only to a CUDA device; an explicit cpu/mps/cuda:N choice wins.
        device = request.device if request.device and self.device == "cuda" else self.device
        timeout = self.timeout_for(request)
        outcome = run_sandboxed(
            [sys.executable, ARTIFACT], cwd=workdir, log_path=workdir / LOG_NAME, timeout_s=timeout,
            extra_env=self._child_env(request, device, nonce), threads=self.threads or request.threads,
            device=device, memory_limit_mb=self.memory_limit_mb if device == "cpu" else None,
            cancel=self._cancel)
        harness_ok = _sha256(harness_copy) == self._harness_sha
        return interpret(outcome, nonce, harness_ok, timeout)

    def _child_env(self, request: RunRequest, device: str, nonce: str) -> dict[str, str]:
        env = {"LEDGERLAB_SEED": str(request.seed), "LEDGERLAB_BUDGET_S": repr(self.budget_s),
               "LEDGERLAB_EVAL_TOKENS": str(self.eval_tokens), "LEDGERLAB_DATA": str(self.dataset.path),
               "LEDGERLAB_DEVICE": "cuda" if device.startswith("cuda") else device, "LEDGERLAB_NONCE": nonce}
        if self.budget_tokens:
            env["LEDGERLAB_BUDGET_TOKENS"] = str(self.budget_tokens)
        if self.threads or request.threads:
            env["LEDGERLAB_THREADS"] = str(self.threads or request.threads)
        return env

    def cancel_all(self) -> None:
        """Kill the runs in flight (the executor calls this at shutdown)."""
        self._cancel.set()

    def close(self) -> None:
        self.cancel_all()


# ------------------------------------------------------------------------------------------- outcomes


def interpret(outcome: SandboxResult, nonce: str, harness_ok: bool, timeout_s: float) -> RunResult:
    """Map how the child ended to a RunResult (see README.md, "Run outcomes")."""
    log = read_tail(outcome.log_path, 64_000)
    base = RunResult(status="crashed", log_tail=outcome.log_tail, duration_s=round(outcome.duration_s, 3),
                     log_path=str(outcome.log_path))
    if outcome.cancelled:
        return replace_result(base, error="cancelled: the campaign stopped while the run was in flight")
    if outcome.timed_out:
        return replace_result(base, status="timeout", error=f"killed after {timeout_s:.0f} s "
                                                            "(budget × grace + startup allowance)")
    if not harness_ok:
        return replace_result(base, status="invalid", error="harness.py was modified during the run")
    for kind in ("diverged", "invalid"):
        match = re.search(rf"^harness: {kind}: (.*)$", log, re.M)
        if match:
            return replace_result(base, status=kind, error=match.group(1).strip())
    summary, signed = parse_summary(log, nonce)
    if outcome.exit_code == 0 and summary is not None and signed:
        return replace_result(base, status="finished", value=float(summary["val_bpb"]), metrics=with_sums(summary))
    if outcome.exit_code != 0:
        last = _last_error_line(log)
        if outcome.exit_code == -9 or any(p in log for p in OOM_PATTERNS):
            return replace_result(base, error=f"out of memory: {last}")
        return replace_result(base, error=f"exit code {outcome.exit_code}: {last}")
    if summary is not None:
        return replace_result(base, status="invalid", error="the summary is not signed by the harness")
    return replace_result(base, status="invalid",
                          error="no summary from the harness: train.py must end with session.finish(model, ...)")


def replace_result(result: RunResult, **changes: Any) -> RunResult:
    return result.model_copy(update=changes)


def parse_summary(log: str, nonce: str) -> tuple[dict[str, Any] | None, bool]:
    """The last `key: value` block after a '---' line, and whether its signature verifies."""
    start = log.rfind("\n---\n") if not log.startswith("---\n") else 0
    if start < 0:
        return None, False
    block = log[start:].split("---\n", 1)[1]
    lines, signature = [], None
    for line in block.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            break
        if key == "signature":
            signature = value.strip()
            break
        lines.append(line)
    summary = {}
    for line in lines:
        key, _, value = line.partition(": ")
        summary[key] = _number(value.strip())
    if "val_bpb" not in summary or not isinstance(summary["val_bpb"], (int, float)):
        return None, False
    body = "".join(f"{line}\n" for line in lines)
    expected = hmac.new(nonce.encode(), body.encode(), hashlib.sha256).hexdigest()
    return summary, signature is not None and hmac.compare_digest(signature, expected)


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


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
