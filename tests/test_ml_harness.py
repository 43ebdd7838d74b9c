"""The fixed harness, in process: bits per byte by hand, the causality probe, the budget, the data split."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ledgerlab.domains.ml_training import harness  # noqa: E402  (imports torch)


class Uniform(torch.nn.Module):
    """Predicts every byte with probability 1/256: exactly 8 bits per byte."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, 256) + 0 * self.dummy


class Unigram(torch.nn.Module):
    """Fixed logits for every position, independent of the context."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*idx.shape, 256)


class Peeker(torch.nn.Module):
    """Cheats: predicts each byte from the next one (not causal)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        nxt = torch.roll(idx, -1, dims=1)
        return torch.nn.functional.one_hot(nxt, 256).float() * 20


def test_uniform_model_scores_eight_bits() -> None:
    tokens = torch.randint(0, 256, (1001,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for seq_len in (7, 64, 1000, 2000):  # the last window is shorter for most of these
        assert harness.evaluate_bpb(Uniform(), tokens, seq_len, batch_size=3) == pytest.approx(8.0, abs=1e-5)


def test_unigram_model_matches_a_hand_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (777,), generator=gen).to(torch.uint8)
    logits = torch.randn(256, generator=gen)
    log_probs = logits.double().log_softmax(0)
    targets = tokens[1:].long()
    by_hand = -log_probs[targets].mean().item() / math.log(2)
    assert harness.evaluate_bpb(Unigram(logits), tokens, seq_len=50, batch_size=4) == pytest.approx(by_hand, rel=1e-5)


def test_causality_probe_catches_a_peeking_model() -> None:
    tokens = torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    assert harness.check_causal(Uniform(), tokens, 64, "cpu") == ""
    assert "not causal" in harness.check_causal(Peeker(), tokens, 64, "cpu")


def test_read_corpus_and_fixed_split(tmp_path: Path) -> None:
    text = bytes(range(256)) * 40
    (tmp_path / "c.txt").write_bytes(text)
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(text))
    assert harness.read_corpus(str(tmp_path / "c.txt")) == harness.read_corpus(str(tmp_path / "c.txt.gz")) == text
    train, val = harness.split(text)
    assert val.numel() == int(len(text) * harness.VAL_FRACTION)
    assert bytes(val.tolist()) == text[-val.numel():] and train.numel() + val.numel() == len(text)


def _session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> harness.Session:
    (tmp_path / "data.txt").write_bytes(bytes(range(256)) * 64)
    monkeypatch.setenv("LEDGERLAB_DATA", str(tmp_path / "data.txt"))
    monkeypatch.setenv("LEDGERLAB_DEVICE", "cpu")
    monkeypatch.delenv("LEDGERLAB_BUDGET_TOKENS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return harness.start()


def test_token_budget_stops_at_the_first_step_past_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    session = _session(monkeypatch, tmp_path, LEDGERLAB_BUDGET_TOKENS="1000", LEDGERLAB_BUDGET_S="1000")
    while not session.done():
        x, y = session.get_batch(4, 16)
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next bytes
        session.step(1.0)
    assert session.tokens == 1024 and session.steps == 16


def test_time_budget_counts_training_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    session = _session(monkeypatch, tmp_path, LEDGERLAB_BUDGET_S="0.3")
    assert session.training_seconds() == 0.0  # setup before the loop is not counted
    while not session.done():
        session.get_batch(2, 8)
        session.step(1.0)
    spent = session.training_seconds()
    assert 0.3 <= spent < 0.6
    assert session.done() and session.training_seconds() == spent  # the clock stopped


def test_seed_fixes_the_data_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="5").get_batch(4, 8)[0]
    b = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="5").get_batch(4, 8)[0]
    c = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="6").get_batch(4, 8)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
