"""The fixed harness and the trusted evaluator, in process: budget, data, export, bits per byte, the contract.

Models here are tiny torch modules exported with torch.export at the evaluator's batch (64), saved to files
and read back the way evaluator.py reads them.
"""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ledgerlab.core.knobs import write_knob  # noqa: E402
from ledgerlab.domains.ml_training import evaluator, harness  # noqa: E402  (import torch)
from ledgerlab.domains.ml_training.domain import TEMPLATE, parse_reported  # noqa: E402
from ledgerlab.domains.ml_training.knobs import KNOBS  # noqa: E402

ContractError = evaluator.ContractError
CPU = torch.device("cpu")
B = evaluator.EVAL_BATCH
assert harness.EVAL_BATCH == B  # the harness exports what the evaluator calls


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
        return self.logits.expand(*idx.shape, 256) + 0 * idx.unsqueeze(-1)


class Peeker(torch.nn.Module):
    """Cheats: predicts each byte from the next one (not causal)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        nxt = torch.roll(idx, -1, dims=1)
        return torch.nn.functional.one_hot(nxt, 256).float() * 20


class Mixer(torch.nn.Module):
    """Causal along each window, but every window's logits depend on the other windows of the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(256, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        return x + x.mean(0, keepdim=True)


class Counter(torch.nn.Module):
    """Keeps state across calls (a buffer it bumps each time): could tell the probes from the scored windows."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return torch.zeros(*idx.shape, 256) + self.calls


class Exploded(torch.nn.Module):
    """What a diverged training run hands over: NaN logits."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.full((idx.shape[0], idx.shape[1], 256), float("nan")) + 0.0 * idx.unsqueeze(-1)


class Narrow(torch.nn.Module):
    """Returns 10 logits per position instead of 256."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, 10) + 0 * idx.unsqueeze(-1)


def export(model: torch.nn.Module, seq_len: int, path: Path, batch: int = B) -> Path:
    """`model` exported for input (batch, seq_len) and saved at `path` (what the harness does, batch aside)."""
    model.eval()
    with torch.no_grad():
        program = torch.export.export(model, (torch.zeros((batch, seq_len), dtype=torch.long),))
    torch.export.save(program, str(path))
    return path


def loaded(path: Path) -> tuple[torch.nn.Module, int]:
    program, seq_len = evaluator.load(str(path))
    return program.module(), seq_len


def text_tokens(n: int) -> torch.Tensor:
    """`n` bytes of real text (the evaluator probes with validation text, not noise)."""
    text = gzip.decompress(Path(harness.__file__).with_name("data").joinpath("corpus.txt.gz").read_bytes())
    return torch.frombuffer(bytearray(text[:n]), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------- bits per byte


def test_uniform_model_scores_eight_bits() -> None:
    tokens = torch.randint(0, 256, (1001,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for seq_len in (7, 64, 1000, 2000):  # the last window is shorter (padded, unscored) for most of these
        assert evaluator.evaluate_bpb(Uniform(), tokens, seq_len, "cpu") == pytest.approx(8.0, abs=1e-5)
    # More windows than one batch of 64: the batches are scored one after another.
    assert evaluator.evaluate_bpb(Uniform(), tokens, 3, "cpu") == pytest.approx(8.0, abs=1e-5)


def test_unigram_model_matches_a_hand_computation(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (777,), generator=gen).to(torch.uint8)
    logits = torch.randn(256, generator=gen)
    by_hand = -logits.double().log_softmax(0)[tokens[1:].long()].mean().item() / math.log(2)
    module, seq_len = loaded(export(Unigram(logits), 50, tmp_path / "unigram.pt2"))
    assert seq_len == 50
    assert evaluator.evaluate_bpb(module, tokens, seq_len, "cpu") == pytest.approx(by_hand, rel=1e-5)


# ------------------------------------------------------------------------------------------- the contract


def test_a_causal_row_independent_model_passes_the_contract(tmp_path: Path) -> None:
    module, seq_len = loaded(export(Uniform(), 32, tmp_path / "uniform.pt2"))
    evaluator.check_contract(module, text_tokens(4096), seq_len, "cpu")


def test_a_peeking_model_breaks_the_contract(tmp_path: Path) -> None:
    module, seq_len = loaded(export(Peeker(), 32, tmp_path / "peeker.pt2"))
    with pytest.raises(ContractError, match="not causal"):
        evaluator.check_contract(module, text_tokens(4096), seq_len, "cpu")


def test_a_model_mixing_the_rows_of_its_batch_breaks_the_contract(tmp_path: Path) -> None:
    module, seq_len = loaded(export(Mixer(), 32, tmp_path / "mixer.pt2"))
    with pytest.raises(ContractError, match="rows are not independent"):
        evaluator.check_contract(module, text_tokens(4096), seq_len, "cpu")


def test_wrong_shapes_and_files_that_are_no_model_are_refused(tmp_path: Path) -> None:
    tokens = text_tokens(4096)
    module, seq_len = loaded(export(Narrow(), 16, tmp_path / "narrow.pt2"))
    with pytest.raises(ContractError, match=r"logits of shape \(B, T, 256\)"):
        evaluator.check_contract(module, tokens, seq_len, "cpu")
    with pytest.raises(ContractError, match="batch=64"):
        evaluator.load(str(export(Uniform(), 16, tmp_path / "batch1.pt2", batch=1)))
    (tmp_path / "garbage.pt2").write_bytes(b"not a zip file at all")
    with pytest.raises(ContractError, match="not a torch.export archive|cannot be loaded"):
        evaluator.load(str(tmp_path / "garbage.pt2"))
    (tmp_path / "empty.pt2").write_bytes(b"")
    with pytest.raises(ContractError):
        evaluator.load(str(tmp_path / "empty.pt2"))
    module, seq_len = loaded(export(Uniform(), 64, tmp_path / "long.pt2"))
    with pytest.raises(ContractError, match="too short"):
        evaluator.check_contract(module, tokens[:100], seq_len, "cpu")


def test_a_model_that_keeps_state_across_calls_is_refused(tmp_path: Path) -> None:
    # torch.export (2.13 here) keeps an in-place buffer update as an aten.add_ node and lists nothing in
    # graph_signature.buffers_to_mutate: the evaluator refuses the mutable operator itself.
    path = export(Counter(), 16, tmp_path / "counter.pt2")
    with pytest.raises(ContractError, match="in place"):
        module, seq_len = loaded(path)
        x = torch.zeros((B, seq_len), dtype=torch.long)
        assert torch.equal(module(x), module(x)), "the model's output changed between two identical calls"


def test_operators_that_touch_files_or_have_only_effects_are_refused() -> None:
    # aten has operators that write (save) or read (from_file) files: a program holding one could write the
    # evaluator's result or read the validation bytes ahead of the window it predicts.
    import types

    for op, args, reason in ((torch.ops.aten.save.default, ("x", "/sandbox/result.json"), "touches files"),
                             (torch.ops.aten.from_file.default, ("/data/val.bin",), "touches files"),
                             (torch.ops.aten._print.default, ("hi",), "effects but no result"),
                             (torch.ops.aten.add_.Tensor, ("x", "x"), "in place")):
        graph = torch.fx.Graph()
        graph.placeholder("x")
        graph.call_function(op, args)
        with pytest.raises(ContractError, match=reason):
            evaluator.check_ops(types.SimpleNamespace(graph=graph))


# ------------------------------------------------------------------------------------------- evaluate()


def test_evaluate_scores_a_file_and_reports_a_broken_contract(tmp_path: Path) -> None:
    val = tmp_path / "val.bin"
    val.write_bytes(bytes(text_tokens(5000).tolist()))
    result = evaluator.evaluate(str(export(Uniform(), 32, tmp_path / "u.pt2")), str(val), 4096, "cpu")
    assert result["status"] == "finished" and result["val_bpb"] == pytest.approx(8.0, abs=1e-5)
    assert result["eval_tokens"] == 4096 and result["seq_len"] == 32 and result["num_params"] == 1
    assert result["seconds"] >= 0
    peeker = evaluator.evaluate(str(export(Peeker(), 32, tmp_path / "p.pt2")), str(val), 4096, "cpu")
    assert peeker["status"] == "invalid" and "not causal" in peeker["reason"] and "val_bpb" not in peeker
    exploded = evaluator.evaluate(str(export(Exploded(), 32, tmp_path / "e.pt2")), str(val), 4096, "cpu")
    assert exploded["status"] == "diverged" and "not finite" in exploded["reason"]
    (tmp_path / "junk.pt2").write_bytes(b"PK\x03\x04 junk")
    junk = evaluator.evaluate(str(tmp_path / "junk.pt2"), str(val), 4096, "cpu")
    assert junk["status"] == "invalid" and junk["reason"]


# ------------------------------------------------------------------------------------------- the harness


def _session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> harness.Session:
    (tmp_path / "train.bin").write_bytes(bytes(range(256)) * 64)
    monkeypatch.setenv("LEDGERLAB_DATA", str(tmp_path / "train.bin"))
    monkeypatch.setenv("LEDGERLAB_DEVICE", "cpu")
    monkeypatch.setenv("LEDGERLAB_MODEL_OUT", str(tmp_path / "model.pt2"))
    monkeypatch.delenv("LEDGERLAB_BUDGET_TOKENS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return harness.start()


def _template_model() -> tuple[torch.nn.Module, int]:
    """The template's GPT with tiny knobs, built in process (the training loop is cut off)."""
    knobs = {k.name: k for k in KNOBS}
    files = {"train.py": TEMPLATE.read_text()}
    for name, value in {"DEPTH": 1, "WIDTH": 32, "HEADS": 2, "SEQ_LEN": 24}.items():
        files = write_knob(files, knobs[name], value)
    source = files["train.py"].split("\nsession = harness.start()")[0]
    namespace: dict = {"__name__": "template_train"}
    exec(compile(source, str(TEMPLATE), "exec"), namespace)  # noqa: S102 - our own template
    torch.manual_seed(0)
    return namespace["GPT"](harness.VOCAB_SIZE), namespace["SEQ_LEN"]


def test_finish_exports_the_template_model_for_the_evaluator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "harness", harness)  # the template's `import harness`
    model, seq_len = _template_model()
    session = _session(monkeypatch, tmp_path, LEDGERLAB_BUDGET_TOKENS="96")
    while not session.done():
        session.get_batch(2, seq_len)
        session.step(1.0)
    session.finish(model, seq_len)
    reported = parse_reported(capsys.readouterr().out)
    assert reported["reported_steps"] == 2 and reported["reported_tokens"] == 96
    assert "reported_training_seconds" in reported
    program, exported_len = evaluator.load(str(tmp_path / "model.pt2"))
    assert exported_len == seq_len
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}  # the tied head counted once
    assert evaluator.count_params(program) == sum(unique.values())
    module = program.module()
    tokens = text_tokens(4096)
    evaluator.check_contract(module, tokens, seq_len, "cpu")  # the template is causal and row-independent
    assert 7.0 < evaluator.evaluate_bpb(module, tokens, seq_len, "cpu") < 9.0  # untrained: about 8 bits


def test_read_corpus_reads_raw_and_gzip(tmp_path: Path) -> None:
    text = bytes(range(256)) * 40
    (tmp_path / "c.txt").write_bytes(text)
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(text))
    assert harness.read_corpus(str(tmp_path / "c.txt")) == harness.read_corpus(str(tmp_path / "c.txt.gz")) == text


def test_the_session_holds_the_training_split_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    session = _session(monkeypatch, tmp_path)
    assert bytes(session.train_data.tolist()) == bytes(range(256)) * 64  # the whole file: no split of its own
    assert not hasattr(session, "val_data")
    assert session.model_out == str(tmp_path / "model.pt2")


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
    assert spent >= 0.3
    assert session.done() and session.training_seconds() == spent  # the clock stopped


def test_seed_fixes_the_data_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="5").get_batch(4, 8)[0]
    b = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="5").get_batch(4, 8)[0]
    c = _session(monkeypatch, tmp_path, LEDGERLAB_SEED="6").get_batch(4, 8)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_progress_lines_are_what_the_console_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ledgerlab.cli.progress import parse_progress

    session = _session(monkeypatch, tmp_path, LEDGERLAB_BUDGET_TOKENS="1000")
    capsys.readouterr()
    while not session.done():
        session.get_batch(4, 16)
        session.step(2.5)
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("step ")]
    assert 10 <= len(lines) <= 16  # every tenth of the budget (more only when steps are seconds apart)
    last = parse_progress(printed)
    assert last is not None and (last.step, last.tokens, last.loss, last.fraction) == (16, 1024, 2.5, 1.0)
