"""
The fixed harness of the ml_training domain: data, seeds, budget, evaluation and the summary.

train.py imports it (`import harness`); a run's working copy holds both files and the runner checks afterwards
that this one is unchanged. A hypothesis may never edit it. Run by hand from a folder holding both files:

    LEDGERLAB_DATA=corpus.txt.gz LEDGERLAB_BUDGET_S=30 python train.py

Settings come from environment variables the runner sets (all optional except the data):
    LEDGERLAB_DATA           a text file (raw bytes, or gzip)    LEDGERLAB_SEED          replicate seed (0)
    LEDGERLAB_BUDGET_S       training seconds (30)               LEDGERLAB_BUDGET_TOKENS training tokens (off)
    LEDGERLAB_EVAL_TOKENS    validation bytes scored (65536)     LEDGERLAB_DEVICE        auto, cpu, cuda, mps
    LEDGERLAB_THREADS        CPU threads                         LEDGERLAB_NONCE         signs the summary

The run ends with `key: value` lines the runner parses (val_bpb, training_seconds, steps, tokens, ...),
followed by `signature:`, an HMAC of those lines under a per-run secret that this module removes from the
environment before train.py's own code runs. Failures print one recognisable line and exit:
    harness: diverged: ...   (exit 3)     the training loss became NaN or Inf
    harness: invalid: ...    (exit 4)     the model broke the evaluation contract (shape, causality)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256  # bytes: bits per byte needs no tokenizer and is comparable across vocabularies
VAL_FRACTION = 0.1  # the last 10% of the corpus is held out, always the same bytes
EXIT_DIVERGED = 3
EXIT_INVALID = 4

_clock = time.perf_counter  # bound at import: patching time.perf_counter later does not stretch the budget
_NONCE = os.environ.pop("LEDGERLAB_NONCE", "").encode()


# ------------------------------------------------------------------------------------------- data


def read_corpus(path: str) -> bytes:
    """The bytes of a text file; gzip files (by magic number) are decompressed."""
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def split(data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation byte tensors: the validation split is the corpus's fixed tail."""
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    n_val = max(2, int(len(tokens) * VAL_FRACTION))
    return tokens[:-n_val], tokens[-n_val:]


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, batch_size: int = 64,
                 device: torch.device | str = "cpu") -> float:
    """Bits per byte of `model` predicting tokens[1:] from what precedes them, in windows of `seq_len`.

    Each byte is predicted exactly once (non-overlapping windows; the last one may be shorter), so the score is
    the mean cross-entropy in nats over len(tokens) - 1 predictions, divided by ln 2.
    """
    n = tokens.numel() - 1
    starts = list(range(0, n, seq_len))
    total_nats, count = 0.0, 0
    was_training = model.training
    model.eval()
    for i in range(0, len(starts), batch_size):
        group = starts[i:i + batch_size]
        # Windows of equal length batch together; the final short window goes alone.
        for length in sorted({min(seq_len, n - s) for s in group}, reverse=True):
            rows = [s for s in group if min(seq_len, n - s) == length]
            x = torch.stack([tokens[s:s + length] for s in rows]).long().to(device)
            y = torch.stack([tokens[s + 1:s + length + 1] for s in rows]).long().to(device)
            logits = model(x)
            if tuple(logits.shape) != (len(rows), length, VOCAB_SIZE):
                _fail("invalid", f"model(idx) must return logits of shape (B, T, {VOCAB_SIZE}), "
                                 f"got {tuple(logits.shape)}")
            loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="sum")
            total_nats += float(loss)
            count += y.numel()
    model.train(was_training)
    return total_nats / count / math.log(2)


@torch.no_grad()
def check_causal(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, device: torch.device | str) -> str:
    """'' when the logits of the first half of a window ignore the second half; else the reason."""
    length = min(seq_len, tokens.numel())
    if length < 4:
        return ""
    was_training = model.training
    model.eval()
    x = tokens[:length].long().unsqueeze(0).to(device)
    probe = x.clone()
    gen = torch.Generator().manual_seed(1234)
    probe[0, length // 2:] = torch.randint(0, VOCAB_SIZE, (length - length // 2,), generator=gen).to(device)
    a = model(x)[0, :length // 2].float()
    b = model(probe)[0, :length // 2].float()
    model.train(was_training)
    gap = (a - b).abs().max().item()
    if not gap <= 1e-3 * (1.0 + a.abs().max().item()):
        return f"model is not causal: changing future bytes moved earlier logits by {gap:.3g}"
    return ""


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
        self.train_data, self.val_data = split(read_corpus(env["LEDGERLAB_DATA"]))
        self.steps = 0
        self.tokens = 0
        self._started: float | None = None
        self._stopped: float | None = None
        self._t0 = _clock()
        self._next_report = 0.1
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
        if self.progress() >= self._next_report:
            print(f"step {self.steps:05d} | loss {value:.4f} | {self.progress():4.0%} of budget", flush=True)
            self._next_report += 0.1

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, model: torch.nn.Module, seq_len: int) -> float:
        """Evaluate `model` on the fixed validation bytes and print the signed summary; returns val_bpb."""
        self.done()
        if self._stopped is None:
            self._stopped = _clock()
        val = self.val_data[: self.eval_tokens + 1]
        reason = check_causal(model, val, seq_len, self.device)
        if reason:
            _fail("invalid", reason)
        with self.autocast():
            val_bpb = evaluate_bpb(model, val, seq_len, device=self.device)
        if not math.isfinite(val_bpb):
            _fail("diverged", f"non-finite val_bpb {val_bpb}")
        summary = {
            "val_bpb": f"{val_bpb:.6f}",
            "training_seconds": f"{self.training_seconds():.2f}",
            "total_seconds": f"{_clock() - self._t0:.2f}",
            "steps": str(self.steps),
            "tokens": str(self.tokens),
            "tokens_per_second": f"{self.tokens / max(self.training_seconds(), 1e-9):.0f}",
            "peak_memory_mb": f"{peak_memory_mb(self.device):.1f}",
            "num_params": str(sum(p.numel() for p in model.parameters())),
            "device": str(self.device),
            "seed": str(self.seed),
            "eval_tokens": str(val.numel() - 1),
        }
        body = "".join(f"{k}: {v}\n" for k, v in summary.items())
        signature = hmac.new(_NONCE, body.encode(), hashlib.sha256).hexdigest() if _NONCE else "unsigned"
        sys.stdout.write("---\n" + body + f"signature: {signature}\n")
        sys.stdout.flush()
        return val_bpb


def start() -> Session:
    """Begin a run: seed, pick the device, load the data."""
    return Session()


# ------------------------------------------------------------------------------------------- helpers


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource  # POSIX only; ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _fail(kind: str, reason: str) -> None:
    # os._exit: a try/except in train.py cannot swallow the verdict.
    sys.stdout.write(f"harness: {kind}: {reason}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_DIVERGED if kind == "diverged" else EXIT_INVALID)
