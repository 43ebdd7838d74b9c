"""
The trusted evaluator of the ml_training domain: val_bpb of an exported model on the held-out split.

The campaign starts it in a sandbox of its own after a training run ends. It loads the program the harness
exported (`torch.export`: a graph of aten operations and its weights, data not code, so no line of the
candidate's Python runs here), checks the evaluation contract itself and scores the validation bytes the
training run never had in its view. It writes one JSON object to LEDGERLAB_RESULT:
    {"status": "finished", "val_bpb": ..., "num_params": ..., "eval_tokens": ..., "seq_len": ..., "seconds": ...}
    {"status": "invalid", "reason": "..."}
Settings (environment): LEDGERLAB_MODEL (the .pt2 file), LEDGERLAB_VAL (raw validation bytes),
LEDGERLAB_EVAL_TOKENS (bytes scored), LEDGERLAB_DEVICE (cpu, cuda), LEDGERLAB_THREADS, LEDGERLAB_RESULT.
Run by hand: LEDGERLAB_MODEL=model.pt2 LEDGERLAB_VAL=val.bin LEDGERLAB_RESULT=out.json python evaluator.py
"""

from __future__ import annotations

import json
import math
import operator
import os
import sys
import time
import zipfile

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256
EVAL_BATCH = 64  # the batch the harness exports with: every call here has exactly this shape
CAUSAL_TOLERANCE = 1e-3


class ContractError(Exception):
    """The model breaks the evaluation contract; the message says how."""


class NonFiniteLogits(Exception):
    """The model's logits hold NaN or Inf: the run diverged."""


def check_archive(path: str) -> None:
    """Raise ContractError unless every weight and constant in the .pt2 archive is a plain tensor payload.

    Pickled payloads (weights or constants with use_pickle, custom or opaque objects, legacy .pt files) are
    code as much as data: the program the harness exports for a plain torch model has none.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                folder = name.split("/data/", 1)[-1] if "/data/" in name else ""
                if folder.startswith(("weights/", "constants/")) and name.endswith(".pt"):
                    raise ContractError(f"the archive holds a pickled file ({name})")
                if folder.startswith(("weights/", "constants/")) and name.endswith("_config.json"):
                    _check_payloads(name, json.loads(archive.read(name)))
                if "/models/" in name and name.endswith(".json"):
                    check_program_json(name, json.loads(archive.read(name)))
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        raise ContractError(f"the exported model is not a torch.export archive: {_first_line(exc)}") from None


def _check_payloads(name: str, config: dict) -> None:
    for fqn, payload in dict(config.get("config", {})).items():
        if payload.get("use_pickle"):
            raise ContractError(f"{fqn} in {name} is pickled, not a plain tensor")
        path = str(payload.get("path_name", ""))
        if "/constants/" in name and not path.startswith("tensor"):
            raise ContractError(f"{fqn} in {name} is a custom object, not a tensor")


def check_program_json(name: str, program: dict) -> None:
    """Raise ContractError unless the serialized program is a fixed-shape graph of aten operators only.

    torch.export.load and ExportedProgram.module() run code the archive carries: `guards_code` is exec'd,
    symbolic expressions are parsed by sympy, node targets name any callable under `torch.`. The harness
    exports fixed shapes, so an honest program has none of the first two and only aten targets.
    """
    if program.get("guards_code"):
        raise ContractError(f"{name} carries guard code (an honest export of fixed shapes has none)")
    if program.get("range_constraints"):
        raise ContractError(f"{name} has symbolic shapes; the harness exports fixed shapes only")
    graph = program.get("graph_module", {}).get("graph", {})
    for kind in ("sym_int_values", "sym_bool_values", "sym_float_values", "custom_obj_values"):
        if graph.get(kind):
            raise ContractError(f"{name} has {kind.replace('_values', '')} values; only tensors are allowed")
    if "expr_str" in json.dumps(program):
        raise ContractError(f"{name} holds symbolic expressions; only fixed shapes are allowed")
    for node in graph.get("nodes", []):
        target = str(node.get("target", ""))
        if not target.startswith("torch.ops.aten.") and target != "_operator.getitem":
            raise ContractError(f"the model calls {target[:80]!r}; only aten operators are allowed")


# aten operators without outputs that an honest export may hold (checks); any other one acts on the world.
CHECK_OPS = {"_assert_tensor_metadata", "_assert_async", "_assert_scalar", "sym_constrain_range",
             "sym_constrain_range_for_size"}


def check_ops(program: torch.export.ExportedProgram) -> None:
    """Raise ContractError unless every call is a pure aten operator: no in-place state, no files, no I/O."""
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if target is operator.getitem:  # picks one output of a multi-output operator
            continue
        schema = getattr(target, "_schema", None)
        if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten" or schema is None:
            raise ContractError(f"the model calls {target!r}; only aten operators are allowed")
        base = schema.name.split("::", 1)[-1]
        if schema.is_mutable:
            raise ContractError(f"the model calls {schema.name}, which modifies its inputs or state in place")
        if any(arg.name in ("filename", "path", "file") for arg in schema.arguments):
            raise ContractError(f"the model calls {schema.name}, which touches files")
        if not schema.returns and base not in CHECK_OPS:
            raise ContractError(f"the model calls {schema.name}, which has effects but no result")


def load(path: str) -> tuple[torch.export.ExportedProgram, int]:
    """The exported program and its context length T (input shape (EVAL_BATCH, T))."""
    check_archive(path)
    try:
        program = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the candidate's failure
        raise ContractError(f"the exported model cannot be loaded: {type(exc).__name__}: {_first_line(exc)}") from None
    check_ops(program)
    signature = program.graph_signature
    if signature.buffers_to_mutate or signature.user_inputs_to_mutate:
        raise ContractError("the model mutates its buffers while predicting (state across calls is not allowed)")
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in signature.user_inputs]
    shapes = [tuple(n.meta["val"].shape) for n in inputs if "val" in n.meta]
    if len(inputs) != 1 or len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][0] != EVAL_BATCH:
        raise ContractError(f"the model must take one (batch={EVAL_BATCH}, T) tensor of byte ids, got {shapes}")
    return program, int(shapes[0][1])


def count_params(program: torch.export.ExportedProgram) -> int:
    """Parameters of the exported program (shared tensors counted once)."""
    seen = {t.data_ptr(): t.numel() for t in program.state_dict.values()}
    return int(sum(seen.values()))


@torch.no_grad()
def logits_of(module: torch.nn.Module, rows: list[torch.Tensor], seq_len: int, device: str) -> torch.Tensor:
    """Logits (len(rows), T, 256) for up to EVAL_BATCH rows, each right-padded with zeros to T."""
    batch = torch.zeros((EVAL_BATCH, seq_len), dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : row.numel()] = row
    out = module(batch.to(device))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (EVAL_BATCH, seq_len, VOCAB_SIZE):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ContractError(f"model(idx) must return logits of shape (B, T, {VOCAB_SIZE}), got {shape}")
    return out[: len(rows)].float()


def check_contract(module: torch.nn.Module, tokens: torch.Tensor, seq_len: int, device: str) -> None:
    """Raise ContractError unless earlier logits ignore later bytes and each row ignores the other rows.

    The probes use real validation text (not random bytes) so that a model cannot tell a probe from a
    scored window; split points at a half and at a fifth of the window. Two calls: one batch holding a
    window, its probes and other windows, and one holding the window alone.
    """
    if tokens.numel() < 3 * seq_len:
        raise ContractError("the validation split is too short for the model's context length")
    first, second, third = (tokens[i * seq_len:(i + 1) * seq_len].long() for i in range(3))
    cuts = sorted({max(1, seq_len // 2), max(1, seq_len // 5)})
    probes = [torch.cat([first[:cut], (third if i % 2 else second)[cut:]]) for i, cut in enumerate(cuts)]
    alone = logits_of(module, [first], seq_len, device)
    if not torch.isfinite(alone).all():
        raise NonFiniteLogits("the model's logits are not finite")
    mixed = logits_of(module, [first, second, third, *probes], seq_len, device)
    _same(alone[0], mixed[0], "rows are not independent: one window's logits depend on the other windows")
    for row, cut in enumerate(cuts, start=3):
        _same(alone[0, :cut], mixed[row, :cut],
              f"not causal: changing bytes after position {cut} moved earlier logits")


def _same(a: torch.Tensor, b: torch.Tensor, reason: str) -> None:
    gap = (a - b).abs().max().item()
    if not gap <= CAUSAL_TOLERANCE * (1.0 + a.abs().max().item()):
        raise ContractError(f"{reason} (by {gap:.3g})")


@torch.no_grad()
def evaluate_bpb(module: torch.nn.Module, tokens: torch.Tensor, seq_len: int, device: str) -> float:
    """Bits per byte predicting tokens[1:] from what precedes them, in non-overlapping windows of T.

    Each byte is predicted exactly once (the last window may be shorter: padded, its padding unscored), so the
    score is the mean cross-entropy in nats over len(tokens) - 1 predictions, divided by ln 2.
    """
    n = tokens.numel() - 1
    starts = list(range(0, n, seq_len))
    total_nats, count = 0.0, 0
    for i in range(0, len(starts), EVAL_BATCH):
        group = starts[i:i + EVAL_BATCH]
        lengths = torch.tensor([min(seq_len, n - s) for s in group])
        rows = [tokens[s:s + int(length)].long() for s, length in zip(group, lengths)]
        targets = torch.full((len(group), seq_len), -100, dtype=torch.long)  # -100: padding, not scored
        for row, (s, length) in enumerate(zip(group, lengths.tolist())):
            targets[row, :length] = tokens[s + 1:s + length + 1].long()
        logits = logits_of(module, rows, seq_len, device)
        total_nats += float(F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), targets.reshape(-1).to(logits.device),
                                            ignore_index=-100, reduction="sum"))
        count += int(lengths.sum())
    return total_nats / count / math.log(2)


def evaluate(model_path: str, val_path: str, eval_tokens: int, device: str) -> dict[str, object]:
    """The result object for one exported model (see the module docstring)."""
    start = time.perf_counter()
    with open(val_path, "rb") as f:
        data = f.read(eval_tokens + 1)
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        program, seq_len = load(model_path)
        module = program.module()
        check_contract(module, tokens, seq_len, device)
        val_bpb = evaluate_bpb(module, tokens, seq_len, device)
    except NonFiniteLogits as exc:
        return {"status": "diverged", "reason": str(exc)}
    except ContractError as exc:
        return {"status": "invalid", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a program that fails to run is the candidate's failure
        return {"status": "invalid", "reason": f"the exported model fails to run: {type(exc).__name__}: "
                                               f"{_first_line(exc)}"}
    if not math.isfinite(val_bpb):
        return {"status": "diverged", "reason": f"non-finite val_bpb {val_bpb}"}
    return {"status": "finished", "val_bpb": val_bpb, "num_params": count_params(program),
            "eval_tokens": tokens.numel() - 1, "seq_len": seq_len,
            "seconds": round(time.perf_counter() - start, 3)}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def main() -> int:
    env = os.environ
    # torch.export.load unpickles some payloads with weights_only=False; a hostile archive would run code
    # here. This forces every torch.load to the restricted unpickler (read at each call), and check_archive
    # refuses raw pickles before loading. The campaign also sets it in this process's environment.
    env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    if env.get("LEDGERLAB_THREADS"):
        torch.set_num_threads(int(env["LEDGERLAB_THREADS"]))
    device = env.get("LEDGERLAB_DEVICE", "cpu")
    result = evaluate(env["LEDGERLAB_MODEL"], env["LEDGERLAB_VAL"], int(env.get("LEDGERLAB_EVAL_TOKENS", "65536")),
                      device)
    with open(env["LEDGERLAB_RESULT"], "w") as f:
        json.dump(result, f)
    print(f"evaluator: {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
