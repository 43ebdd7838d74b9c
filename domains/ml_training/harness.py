"""
The fixed harness of the ml_training domain: data, seeds, budget, and handing the trained model over.

train.py imports it (`import harness`); a run's working copy holds both files, read-only. A hypothesis may
never edit it. It runs inside the candidate's process, so nothing it reports is trusted: the number the
campaign records comes from evaluator.py, a separate process that scores the model exported here on
validation bytes this process never had (LEDGERLAB_DATA holds the training split only). Run by hand from a
folder holding both files:

    LEDGERLAB_DATA=train.bin LEDGERLAB_MODEL_OUT=model.pt2 LEDGERLAB_BUDGET_S=30 python train.py

Settings come from environment variables the runner sets (all optional except the data):
    LEDGERLAB_DATA           the training bytes (raw, or gzip)   LEDGERLAB_SEED          replicate seed (0)
    LEDGERLAB_BUDGET_S       training seconds (30)               LEDGERLAB_BUDGET_TOKENS training tokens (off)
    LEDGERLAB_MODEL_OUT      where the exported model goes       LEDGERLAB_DEVICE        auto, cpu, cuda, mps
    LEDGERLAB_THREADS        CPU threads

`session.finish(model, seq_len)` exports the model with torch.export for input (EVAL_BATCH, seq_len) and
prints what the run reports of itself (`reported_*` lines: steps, tokens, training seconds; informational).
While training, `session.step(loss)` prints `step N | tokens N | loss X | P% of budget` every tenth of the
budget and at least every 2 s: the campaign's console shows it live (display only, never a measurement).
Failures print one recognisable line and exit:
    harness: diverged: ...   (exit 3)     the training loss became NaN or Inf
    harness: invalid: ...    (exit 4)     the model cannot be exported
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import random
import sys
import time

import torch

VOCAB_SIZE = 256  # bytes: bits per byte needs no tokenizer and is comparable across vocabularies
EVAL_BATCH = 64  # the evaluator calls the exported model with exactly this batch size
EXIT_DIVERGED = 3
EXIT_INVALID = 4
REPORT_S = 2.0  # the longest gap between progress lines

_clock = time.perf_counter  # bound at import: patching time.perf_counter later does not stretch the budget


# ------------------------------------------------------------------------------------------- data


def read_corpus(path: str) -> bytes:
    """The bytes of a text file; gzip files (by magic number) are decompressed."""
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------- the session


class Session:
    """One training run: hands out batches, keeps the budget, evaluates, prints the summary."""

    def __init__(self) -> None:
        env = os.environ
        self.seed = int(env.get("LEDGERLAB_SEED", "0"))
        self.budget_s = float(env.get("LEDGERLAB_BUDGET_S", "30"))
        self.budget_tokens = int(env.get("LEDGERLAB_BUDGET_TOKENS", "0"))  # 0: time budget only
        self.eval_tokens = int(env.get("LEDGERLAB_EVAL_TOKENS", str(65536)))
        self.device = pick_device(env.get("LEDGERLAB_DEVICE", "auto"))
        self.vocab_size = VOCAB_SIZE
        if env.get("LEDGERLAB_THREADS"):
            torch.set_num_threads(int(env["LEDGERLAB_THREADS"]))
        # Replicate control: the seed fixes the initialisation (global RNG) and the data order (own generator).
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        self._data_gen = torch.Generator().manual_seed(self.seed)
        self.train_data = torch.frombuffer(bytearray(read_corpus(env["LEDGERLAB_DATA"])), dtype=torch.uint8)
        self.model_out = env.get("LEDGERLAB_MODEL_OUT", "model.pt2")
        self.steps = 0
        self.tokens = 0
        self._started: float | None = None
        self._stopped: float | None = None
        self._t0 = _clock()
        self._next_report = 0.1
        self._last_report = self._t0
        budget = f"{self.budget_tokens:,} tokens" if self.budget_tokens else f"{self.budget_s:g} s"
        print(f"harness: device {self.device}, seed {self.seed}, budget {budget}", flush=True)

    # -- data ------------------------------------------------------------------------------------

    def get_batch(self, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random training batch: inputs and next-byte targets, (batch_size, seq_len) int64 on the device."""
        starts = torch.randint(0, self.train_data.numel() - seq_len - 1, (batch_size,), generator=self._data_gen)
        window = starts[:, None] + torch.arange(seq_len + 1)
        chunk = self.train_data[window].long()
        self.tokens += batch_size * seq_len
        return chunk[:, :-1].contiguous().to(self.device), chunk[:, 1:].contiguous().to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA, a no-op elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- budget ----------------------------------------------------------------------------------

    def training_seconds(self) -> float:
        if self._started is None:
            return 0.0
        return (self._stopped or _clock()) - self._started

    def progress(self) -> float:
        """Fraction of the budget used, 0..1 (the clock starts at the first call of progress() or done())."""
        if self._started is None:
            self._started = _clock()
        if self.budget_tokens:
            return min(1.0, self.tokens / self.budget_tokens)
        return min(1.0, self.training_seconds() / self.budget_s)

    def done(self) -> bool:
        """True once the budget is spent; stops the training clock."""
        finished = self.progress() >= 1.0
        if finished and self._stopped is None:
            self._stopped = _clock()
        return finished

    def step(self, loss: torch.Tensor | float) -> None:
        """Record one optimizer step; abort at once if the loss is NaN or Inf."""
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self.steps += 1
        if not math.isfinite(value):
            _fail("diverged", f"non-finite training loss {value} at step {self.steps}")
        self._report(value)

    def _report(self, loss: float) -> None:
        """A progress line every tenth of the budget and at least every REPORT_S seconds (display only).

        The campaign's console shows these live; they are the run's own words, so nothing but the display
        reads them (a run can print anything; the metric comes from the evaluator).
        """
        fraction, now = self.progress(), _clock()
        if fraction < self._next_report and now - self._last_report < REPORT_S:
            return
        print(f"step {self.steps:05d} | tokens {self.tokens} | loss {loss:.4f} | {fraction:4.0%} of budget",
              flush=True)
        self._last_report = now
        while self._next_report <= fraction:
            self._next_report += 0.1

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, model: torch.nn.Module, seq_len: int) -> None:
        """Stop the clock, export `model` for the evaluator, print what the run reports of itself."""
        self.done()
        if self._stopped is None:
            self._stopped = _clock()
        export_started = _clock()
        export_model(model, seq_len, self.device, self.model_out)
        reported = {
            "reported_export_seconds": f"{_clock() - export_started:.2f}",
            "reported_training_seconds": f"{self.training_seconds():.2f}",
            "reported_steps": str(self.steps),
            "reported_tokens": str(self.tokens),
        }
        sys.stdout.write("---\n" + "".join(f"{k}: {v}\n" for k, v in reported.items()))
        sys.stdout.flush()


def export_model(model: torch.nn.Module, seq_len: int, device: torch.device, path: str) -> None:
    """Save `model` as a torch.export program taking (EVAL_BATCH, seq_len) byte ids; exit 4 when it cannot be."""
    model.eval()
    example = torch.zeros((EVAL_BATCH, seq_len), dtype=torch.long, device=device)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,))
        torch.export.save(program, path)
    except Exception as exc:  # noqa: BLE001 - any export failure makes the run invalid
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail("invalid", f"the model cannot be exported with torch.export: {type(exc).__name__}: {first}")


def start() -> Session:
    """Begin a run: seed, pick the device, load the data."""
    return Session()


# ------------------------------------------------------------------------------------------- helpers


def _fail(kind: str, reason: str) -> None:
    # os._exit: a try/except in train.py cannot swallow the verdict.
    sys.stdout.write(f"harness: {kind}: {reason}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_DIVERGED if kind == "diverged" else EXIT_INVALID)
